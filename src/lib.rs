//! Keeps the background loops of a tokio service alive and makes their health
//! visible.
//!
//! This crate re-exports the runtime ([`supervised_core`]) and the
//! `#[supervised]` attribute; see their docs.
#![warn(missing_docs, rust_2018_idioms)]
#![forbid(unsafe_code)]

pub use supervised_core::*;
pub use supervised_macros::supervised;

/// Items used by the code the macros generate. Not public API.
#[doc(hidden)]
pub mod __private {}

/// The README's examples, compiled as doc tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
