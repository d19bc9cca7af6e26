//! The `self` of a method's body, renamed: each attempt owns a clone of the
//! receiver, and a closure cannot rebind `self`.

use proc_macro2::{Group, Ident, Span, TokenStream, TokenTree};
use syn::visit_mut::{self, VisitMut};
use syn::{Block, Expr};

/// The name `self` takes in the generated code.
pub(super) fn renamed(span: Span) -> Ident {
    Ident::new("__self", span)
}

/// Renames every `self` value of `body`, closures, async blocks and macro
/// arguments included, but not in nested items (which have their own `self`)
/// or in paths (`self::module`).
pub(super) fn rename_self(body: &mut Block) {
    Renamer.visit_block_mut(body);
}

/// Renames `self` in tokens: every `self` ident not followed by `::`.
pub(super) fn rename_self_tokens(tokens: TokenStream) -> TokenStream {
    let mut out = Vec::new();
    let mut iter = tokens.into_iter().peekable();
    while let Some(token) = iter.next() {
        match token {
            TokenTree::Ident(i) if i == "self" => {
                let path = matches!(iter.peek(), Some(TokenTree::Punct(p)) if p.as_char() == ':');
                out.push(if path {
                    TokenTree::Ident(i)
                } else {
                    TokenTree::Ident(renamed(i.span()))
                });
            }
            TokenTree::Group(g) => {
                let mut inner = Group::new(g.delimiter(), rename_self_tokens(g.stream()));
                inner.set_span(g.span());
                out.push(TokenTree::Group(inner));
            }
            other => out.push(other),
        }
    }
    out.into_iter().collect()
}

struct Renamer;

impl VisitMut for Renamer {
    fn visit_expr_mut(&mut self, expr: &mut Expr) {
        if let Expr::Path(p) = expr {
            if p.qself.is_none() && p.path.is_ident("self") {
                let span = p.path.segments[0].ident.span();
                let ident = renamed(span);
                *expr = syn::parse_quote_spanned!(span=> #ident);
                return;
            }
        }
        visit_mut::visit_expr_mut(self, expr);
    }

    fn visit_macro_mut(&mut self, mac: &mut syn::Macro) {
        mac.tokens = rename_self_tokens(std::mem::take(&mut mac.tokens));
    }

    fn visit_item_mut(&mut self, _: &mut syn::Item) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::{quote, ToTokens};

    #[test]
    fn self_values_are_renamed_but_not_paths_or_nested_items() {
        let mut block: Block = syn::parse2(quote!({
            self.tick().await;
            let me = self;
            let f = move || self.n;
            println!("{}", self.n);
            let _ = self::helper();
            impl Other {
                fn m(&self) -> u8 {
                    self.0
                }
            }
        }))
        .unwrap();
        rename_self(&mut block);
        let s = block.to_token_stream().to_string().replace(' ', "");
        assert!(s.contains("__self.tick().await"), "{s}");
        assert!(s.contains("letme=__self;"), "{s}");
        assert!(s.contains("move||__self.n"), "{s}");
        assert!(s.contains("println!(\"{}\",__self.n)"), "{s}");
        assert!(s.contains("self::helper()"), "{s}");
        assert!(s.contains("fnm(&self)->u8{self.0}"), "{s}");
    }
}
