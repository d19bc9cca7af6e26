//! Small questions about token streams, shared by the attribute's parts.

use proc_macro2::{TokenStream, TokenTree};

/// Whether any of `words` is an ident anywhere in `tokens`, groups
/// included.
pub(crate) fn mentions(tokens: &TokenStream, words: &[&str]) -> bool {
    tokens.clone().into_iter().any(|t| match t {
        TokenTree::Ident(i) => words.iter().any(|w| i == w),
        TokenTree::Group(g) => mentions(&g.stream(), words),
        _ => false,
    })
}
