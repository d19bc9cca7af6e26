//! The expansion's builder: tokens are appended to one stream per group.
//!
//! A proc macro's token streams live in the compiler, and the attribute runs
//! unoptimised in the user's debug builds: every stream built on its own and
//! then interpolated into another (what nested `quote!`s do) is a round
//! trip into the compiler, and those trips were most of the expansion's
//! cost. Trees appended here are handed over once, when their group is
//! closed.

use proc_macro2::{Delimiter, Group, Ident, Punct, Spacing, Span, TokenStream, TokenTree};
use quote::ToTokens;

/// A group's contents, being written.
pub(super) struct Out {
    tokens: TokenStream,
    /// The span of the tokens written from text.
    span: Span,
}

impl Out {
    pub(super) fn new(span: Span) -> Out {
        Out {
            tokens: TokenStream::new(),
            span,
        }
    }

    fn tree(&mut self, tree: TokenTree) -> &mut Self {
        self.tokens.extend(std::iter::once(tree));
        self
    }

    /// An identifier or keyword.
    pub(super) fn word(&mut self, word: &str) -> &mut Self {
        self.tree(TokenTree::Ident(Ident::new(word, self.span)))
    }

    /// Punctuation, e.g. `::` or `->`: one joint token per character.
    pub(super) fn punct(&mut self, chars: &str) -> &mut Self {
        let last = chars.len() - 1;
        for (i, c) in chars.chars().enumerate() {
            let spacing = if i < last {
                Spacing::Joint
            } else {
                Spacing::Alone
            };
            let mut punct = Punct::new(c, spacing);
            punct.set_span(self.span);
            self.tree(TokenTree::Punct(punct));
        }
        self
    }

    /// A path written `a::b::c`, with a leading `::` when it starts with it.
    pub(super) fn path(&mut self, path: &str) -> &mut Self {
        for (i, segment) in path.split("::").enumerate() {
            if i > 0 {
                self.punct("::");
            }
            if !segment.is_empty() {
                self.word(segment);
            }
        }
        self
    }

    /// The runtime's `__private` path `pm`, then `::tail`.
    pub(super) fn private(&mut self, pm: impl ToTokens, tail: &str) -> &mut Self {
        self.tokens(pm).punct("::").path(tail)
    }

    /// Tokens that keep their own spans: the user's, or ones built apart.
    pub(super) fn tokens(&mut self, tokens: impl ToTokens) -> &mut Self {
        tokens.to_tokens(&mut self.tokens);
        self
    }

    /// A group whose contents `fill` writes; the group has `span`, or the
    /// builder's.
    pub(super) fn group(
        &mut self,
        delimiter: Delimiter,
        span: Option<Span>,
        fill: impl FnOnce(&mut Out),
    ) -> &mut Self {
        let mut inner = Out::new(self.span);
        fill(&mut inner);
        let mut group = Group::new(delimiter, inner.tokens);
        group.set_span(span.unwrap_or(self.span));
        self.tree(TokenTree::Group(group))
    }

    /// Writes with `span` on the tokens from text, as `quote_spanned!` does.
    pub(super) fn spanned(&mut self, span: Span, fill: impl FnOnce(&mut Out)) -> &mut Self {
        let outer = std::mem::replace(&mut self.span, span);
        fill(self);
        self.span = outer;
        self
    }

    pub(super) fn finish(self) -> TokenStream {
        self.tokens
    }
}
