//! Procedural macros of `supervised`. Use them through the `supervised` crate.
#![warn(missing_docs, rust_2018_idioms, unreachable_pub)]

use proc_macro::TokenStream;

/// Turns an async fn into a supervised task (placeholder: not implemented yet).
#[proc_macro_attribute]
pub fn supervised(_args: TokenStream, item: TokenStream) -> TokenStream {
    item
}
