//! Procedural macros of [`supervised`](https://docs.rs/supervised): the
//! `#[supervised]` attribute and the implementation of `spawn_all!`.
//!
//! Use them through the `supervised` crate, which documents them with examples;
//! the code they generate reaches the runtime only through
//! `supervised::__private`.
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]
#![forbid(unsafe_code)]

use proc_macro::TokenStream;

mod args;
mod attribute;
mod duration;
mod errors;
mod heartbeat;
mod spawn_all;
mod tokens;

/// Turns an `async fn` into a fn that returns a supervised `Task`.
///
/// See `supervised::supervised` for the arguments and examples.
#[proc_macro_attribute]
pub fn supervised(args: TokenStream, item: TokenStream) -> TokenStream {
    attribute::expand(args.into(), item.into()).into()
}

/// The implementation of `supervised::spawn_all!`, which passes the path of
/// the `supervised` crate in brackets first. Not public API.
#[doc(hidden)]
#[proc_macro]
pub fn __spawn_all(input: TokenStream) -> TokenStream {
    spawn_all::expand(input.into()).into()
}
