//! Keeps the background loops of a tokio service alive and makes their health
//! visible.
//!
//! This crate re-exports the runtime ([`supervised_core`]); see its docs.
#![warn(missing_docs, rust_2018_idioms)]
#![forbid(unsafe_code)]

pub use supervised_core::*;
