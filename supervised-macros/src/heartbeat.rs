//! Heartbeat injection: one heartbeat at the start of every iteration of each
//! loop the fn's body reaches without entering another loop, a closure, an
//! async block or a nested item.

use proc_macro2::{Span, TokenStream, TokenTree};
use syn::visit_mut::{self, VisitMut};
use syn::{Block, Stmt};

/// What injection found in a body.
#[derive(Default)]
pub(crate) struct Injected {
    /// How many loops received a heartbeat.
    pub(crate) loops: usize,
    /// A macro call whose tokens hold a loop keyword (`loop`, `while`,
    /// `for`), which the attribute cannot see into: its path and span.
    pub(crate) unseen: Option<(String, Span)>,
}

/// Inserts `beat` as the first statement of the body of every `loop`,
/// `while` and `for` reached from `body`: statements, `let` initialisers,
/// `if`/`else` branches, `match` arms, plain, labelled and `unsafe` blocks,
/// and any other expression. The bodies of those loops are not entered (a
/// nested loop pays nothing), nor are closures, async blocks, `const`
/// blocks and nested items, which run on their own schedule.
///
/// The heartbeat goes first so that `continue` (which skips the rest of the
/// body, not its start) still records the iteration.
pub(crate) fn inject(body: &mut Block, beat: &TokenStream) -> Injected {
    let mut walker = Walker {
        beat: syn::parse_quote!(#beat;),
        found: Injected::default(),
    };
    walker.visit_block_mut(body);
    walker.found
}

struct Walker {
    beat: Stmt,
    found: Injected,
}

impl Walker {
    fn instrument(&mut self, body: &mut Block) {
        body.stmts.insert(0, self.beat.clone());
        self.found.loops += 1;
    }
}

impl VisitMut for Walker {
    fn visit_expr_loop_mut(&mut self, l: &mut syn::ExprLoop) {
        self.instrument(&mut l.body);
    }

    fn visit_expr_while_mut(&mut self, w: &mut syn::ExprWhile) {
        self.instrument(&mut w.body);
    }

    fn visit_expr_for_loop_mut(&mut self, f: &mut syn::ExprForLoop) {
        // The iterator expression runs once, before the loop.
        self.visit_expr_mut(&mut f.expr);
        self.instrument(&mut f.body);
    }

    fn visit_expr_closure_mut(&mut self, _: &mut syn::ExprClosure) {}

    fn visit_expr_async_mut(&mut self, _: &mut syn::ExprAsync) {}

    fn visit_expr_const_mut(&mut self, _: &mut syn::ExprConst) {}

    fn visit_item_mut(&mut self, _: &mut syn::Item) {}

    fn visit_macro_mut(&mut self, mac: &mut syn::Macro) {
        if self.found.unseen.is_none() && has_loop_keyword(&mac.tokens) {
            let path = quote::ToTokens::to_token_stream(&mac.path)
                .to_string()
                .replace(' ', "");
            let span = mac
                .path
                .segments
                .last()
                .map_or_else(Span::call_site, |s| s.ident.span());
            self.found.unseen = Some((path, span));
        }
        visit_mut::visit_macro_mut(self, mac);
    }
}

fn has_loop_keyword(tokens: &TokenStream) -> bool {
    tokens.clone().into_iter().any(|t| match t {
        TokenTree::Ident(i) => i == "loop" || i == "while" || i == "for",
        TokenTree::Group(g) => has_loop_keyword(&g.stream()),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::{quote, ToTokens};

    fn injected(body: TokenStream) -> (Injected, String) {
        let mut block: Block = syn::parse2(body).unwrap();
        let found = inject(&mut block, &quote!(beat()));
        (found, block.to_token_stream().to_string().replace(' ', ""))
    }

    #[test]
    fn top_level_loops_beat_first() {
        let (found, s) = injected(quote!({
            let mut i = 0;
            loop {
                i += 1;
                if i > 3 {
                    break;
                }
            }
            while i > 0 {
                i -= 1;
                continue;
            }
            'outer: for x in 0..3 {
                let _ = x;
            }
            loop {
                tick().await
            }
        }));
        assert_eq!(found.loops, 4);
        assert!(s.contains("loop{beat();i+=1;"), "{s}");
        assert!(s.contains("whilei>0{beat();i-=1;continue;}"), "{s}");
        assert!(s.contains("'outer:forxin0..3{beat();"), "{s}");
        assert!(s.contains("loop{beat();tick().await}"), "{s}");
    }

    #[test]
    fn loops_in_lets_branches_arms_and_blocks_beat() {
        let (found, s) = injected(quote!({
            let v = loop {
                break 1;
            };
            if x {
                loop {}
            } else if y {
                while a {}
            } else {
                for b in c {}
            }
            match m {
                A => loop {},
                B => loop {},
            }
            {
                loop {}
            }
            'block: {
                loop {}
            }
            unsafe { loop {} }
            let Some(x) = (loop {}) else { loop {} };
            f(loop {})
        }));
        assert_eq!(found.loops, 12, "{s}");
        assert_eq!(s.matches("beat()").count(), 12, "{s}");
        assert!(s.contains("letv=loop{beat();break1;}"), "{s}");
        assert!(found.unseen.is_none());
    }

    #[test]
    fn nested_loops_closures_async_blocks_and_items_are_left_alone() {
        let (found, s) = injected(quote!({
            let f = || loop {};
            let g = async { loop {} };
            fn helper() {
                loop {}
            }
            const N: usize = { loop {} };
            loop {
                for y in 0..10 {
                    let _ = y;
                }
                if z {
                    loop {}
                }
            }
        }));
        assert_eq!(found.loops, 1, "{s}");
        assert_eq!(s.matches("beat()").count(), 1, "{s}");
        assert!(s.contains("loop{beat();for"), "{s}");
    }

    #[test]
    fn loops_inside_macros_are_reported_unseen() {
        let (found, _) = injected(quote!({
            println!("{}", 1);
            tokio::select! {
                _ = async { loop {} } => {}
            }
        }));
        assert_eq!(found.loops, 0);
        let (path, _) = found.unseen.expect("the select! loop");
        assert_eq!(path, "tokio::select");
    }
}
