//! Heartbeat injection: one heartbeat at the start of every iteration of the
//! loops that are statements of the fn's own body.

use proc_macro2::TokenStream;
use syn::{Block, Expr, Stmt};

/// Inserts `beat` as the first statement of the body of every `loop`, `while`
/// and `for` that is a statement (or the tail expression) of `body`. Loops
/// nested deeper, inside closures or async blocks, are left alone. Returns how
/// many loops received a heartbeat.
///
/// The heartbeat goes first so that `continue` (which skips the rest of the
/// body, not its start) still records the iteration.
pub(crate) fn inject(body: &mut Block, beat: &TokenStream) -> usize {
    let mut injected = 0;
    for stmt in &mut body.stmts {
        let Stmt::Expr(expr, _) = stmt else {
            continue;
        };
        if let Some(loop_body) = loop_body(expr) {
            let stmt: Stmt = syn::parse_quote!(#beat;);
            loop_body.stmts.insert(0, stmt);
            injected += 1;
        }
    }
    injected
}

fn loop_body(expr: &mut Expr) -> Option<&mut Block> {
    match expr {
        Expr::Loop(l) => Some(&mut l.body),
        Expr::While(w) => Some(&mut w.body),
        Expr::ForLoop(f) => Some(&mut f.body),
        // A loop handed over by a `macro_rules!` fragment.
        Expr::Group(g) => loop_body(&mut g.expr),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::{quote, ToTokens};

    fn injected(body: TokenStream) -> (usize, String) {
        let mut block: Block = syn::parse2(body).unwrap();
        let n = inject(&mut block, &quote!(beat()));
        (n, block.to_token_stream().to_string().replace(' ', ""))
    }

    #[test]
    fn top_level_loops_beat_first() {
        let (n, s) = injected(quote!({
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
        assert_eq!(n, 4);
        assert!(s.contains("loop{beat();i+=1;"), "{s}");
        assert!(s.contains("whilei>0{beat();i-=1;continue;}"), "{s}");
        assert!(s.contains("'outer:forxin0..3{beat();"), "{s}");
        assert!(s.contains("loop{beat();tick().await}"), "{s}");
    }

    #[test]
    fn nested_loops_closures_and_async_blocks_are_left_alone() {
        let (n, s) = injected(quote!({
            let f = || loop {};
            let g = async { loop {} };
            {
                loop {}
            }
            if x {
                loop {}
            }
            let v = loop {
                break 1;
            };
            loop {
                for y in 0..10 {
                    let _ = y;
                }
            }
        }));
        assert_eq!(n, 1);
        assert_eq!(s.matches("beat()").count(), 1, "{s}");
        assert!(s.contains("loop{beat();for"), "{s}");
    }
}
