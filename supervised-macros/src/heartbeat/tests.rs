//! The token walker, checked against a walker over the parsed body.

use super::*;
use proc_macro2::{Delimiter, Group};
use quote::{quote, ToTokens};
use syn::visit_mut::{self, VisitMut};

/// A walker over the parsed body, on `syn`'s visitor: the reference
/// the token walker must agree with.
mod oracle {
    use super::*;
    use syn::{Block, Stmt};

    pub(super) fn inject(body: &mut Block, beat: &TokenStream) -> usize {
        let mut walker = Walker {
            beat: syn::parse_quote!(#beat;),
            loops: 0,
        };
        walker.visit_block_mut(body);
        walker.loops
    }

    struct Walker {
        beat: Stmt,
        loops: usize,
    }

    impl Walker {
        fn instrument(&mut self, body: &mut Block) {
            body.stmts.insert(0, self.beat.clone());
            self.loops += 1;
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
            self.visit_expr_mut(&mut f.expr);
            self.instrument(&mut f.body);
        }
        fn visit_expr_closure_mut(&mut self, _: &mut syn::ExprClosure) {}
        fn visit_expr_async_mut(&mut self, _: &mut syn::ExprAsync) {}
        fn visit_expr_const_mut(&mut self, _: &mut syn::ExprConst) {}
        fn visit_item_mut(&mut self, _: &mut syn::Item) {}
        fn visit_macro_mut(&mut self, mac: &mut syn::Macro) {
            visit_mut::visit_macro_mut(self, mac);
        }
    }
}

fn group(body: TokenStream) -> Group {
    match body.into_iter().next() {
        Some(TokenTree::Group(g)) => g,
        _ => panic!("a body in braces"),
    }
}

fn squash(t: impl ToTokens) -> String {
    t.to_token_stream().to_string().replace(' ', "")
}

fn injected(body: TokenStream) -> (Injected, String) {
    let (out, found) = inject(&group(body), &quote!(beat()));
    (found, squash(out))
}

/// The token walker and the reference agree on `body`: the same loops
/// get a heartbeat, in the same places.
fn agrees(body: TokenStream) -> usize {
    let (found, ours) = injected(body.clone());
    let mut block: syn::Block = syn::parse2(body).expect("the case parses");
    let loops = oracle::inject(&mut block, &quote!(beat()));
    assert_eq!(
        ours,
        squash(&block),
        "the token walker and the parsed walker differ"
    );
    assert_eq!(found.loops, loops);
    loops
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
    let body = quote!({
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
    });
    assert_eq!(agrees(body.clone()), 12);
    let (_, s) = injected(body);
    assert!(s.contains("letv=loop{beat();break1;}"), "{s}");
}

#[test]
fn nested_loops_closures_async_blocks_and_items_are_left_alone() {
    let body = quote!({
        let f = || loop {};
        let g = async { loop {} };
        let h = async move { loop {} };
        let k = move |x: u8| -> u8 { loop {} };
        let m = |a, b| {
            for _ in a {}
        };
        fn helper() {
            loop {}
        }
        async fn later() {
            loop {}
        }
        const N: usize = { loop {} };
        static S: u8 = { loop {} };
        let c = const { loop {} };
        impl Trait for Type {
            fn m(&self) {
                loop {}
            }
        }
        struct P {
            a: u8,
        }
        mod inner {
            fn f() {
                loop {}
            }
        }
        trait T {
            fn d() {
                loop {}
            }
        }
        enum E {
            A = { loop {} },
        }
        macro_rules! m {
            () => {
                loop {}
            };
        }
        loop {
            for y in 0..10 {
                let _ = y;
            }
            if z {
                loop {}
            }
        }
    });
    assert_eq!(agrees(body.clone()), 1);
    let (_, s) = injected(body);
    assert!(s.contains("loop{beat();for"), "{s}");
}

#[test]
fn heads_that_hold_blocks_are_read_as_rust_reads_them() {
    agrees(quote!({
        while {
            let go = f();
            go
        } {
            loop {}
        }
        for x in match y {
            A => a,
            _ => b,
        } {
            x.run()
        }
        for x in if c { a } else { b } {
            let _ = x;
        }
        while a || b {
            step()
        }
        while let Some(v) = (|| it.next())() {
            use_it(v)
        }
        for x in xs.iter().map(|x| x + 1) {
            let _ = x;
        }
        for x in (loop {
            break xs;
        }) {
            let _ = x;
        }
        while x != y {
            y += 1
        }
    }));
}

#[test]
fn types_bounds_operators_and_attributes_are_not_items_or_closures() {
    agrees(quote!({
        let p: *const u8 = loop {
            break ptr;
        };
        let q: fn(u8) -> u8 = double;
        let r: Box<dyn for<'a> Fn(&'a u8)> = Box::new(|_| {});
        let s: &'static str = "x";
        let t = a | b;
        let u = a
            || loop {
                break true;
            };
        let mut w = 0;
        w |= 1;
        #[allow(unused)]
        let v = loop {
            break 1;
        };
        if !(a) {
            loop {}
        }
        let extern_ok = unsafe {
            loop {
                break 2;
            }
        };
        let z = x as u8;
        x?;
        loop {
            step()
        }
    }));
}

/// Cases an independent review found the token walker reading otherwise
/// than Rust: each once produced a heartbeat in the wrong place (inside a
/// macro's input, a closure or a struct literal) or missed a loop.
#[test]
fn heads_closures_and_arms_that_once_misled_the_walker() {
    // A macro call with braces in a loop's head: its input is not the body.
    agrees(quote!({
        while let Some(m) = tokio::select! { m = rx.recv() => m, _ = t.cancelled() => None, } {
            loop {}
            handle(m);
        }
        for x in m! { a } {
            handle(x)
        }
    }));
    // A closure whose return type holds a block: its body is skipped whole.
    agrees(quote!({
        let f = move |x: u8| -> Foo<{ 3 }> { loop {} };
        let g = || -> <T as Tr<{ 1 }>>::Out { loop {} };
        match x {
            A => || -> Foo<{ 1 }> { loop {} },
            B => loop {},
        }
        loop {}
    }));
    // A match arm's leading `|` is not a closure.
    agrees(quote!({
        match x {
            A => loop {},
            B => {}
        }
        match x {
            A => 1,
            B | C => loop {
                break 2;
            },
        }
        match x {
            A => 1,
            B => f(|y| y),
            C => loop {},
        }
    }));
    // `&raw const` is a borrow, not a `const` item.
    agrees(quote!({
        match k {
            A => &raw const X,
            B => loop {},
        }
        f(
            &raw const X,
            loop {
                break 1;
            },
        );
    }));
    // A `|` that finds a `;` before its pair is an operator.
    agrees(quote!({
        let m = v as Wrapping<u32> | w;
        loop {}
    }));
    // A comma inside a turbofish does not end a closure's body.
    agrees(quote!({
        let f = |x| foo::<A, B>(loop {});
        loop {}
    }));
}

/// A loop body or a `while` head given by a `macro_rules!` fragment arrives
/// in an invisible group: the heartbeat goes into the block inside it, and
/// a struct literal after it is left alone.
#[test]
fn blocks_from_macro_fragments_are_loop_bodies() {
    let fragment = |body: TokenStream| {
        TokenTree::Group(Group::new(
            Delimiter::None,
            TokenTree::Group(group(body)).into(),
        ))
    };
    let body_a = fragment(quote!({
        step();
        loop {}
    }));
    let body_b = fragment(quote!({ step() }));
    let body_c = fragment(quote!({ step() }));
    let (found, s) = injected(quote!({
        for x in xs #body_a let s = S { a: 1 };
        while c #body_b let t = S { a: 2 };
        loop #body_c
    }));
    assert_eq!(found.loops, 3, "{s}");
    assert!(s.contains("forxinxs{beat();step();loop{}}"), "{s}");
    assert!(s.contains("whilec{beat();step()}"), "{s}");
    assert!(s.contains("loop{beat();step()}"), "{s}");
    assert!(s.contains("S{a:1}") && s.contains("S{a:2}"), "{s}");
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
    let (found, _) = injected(quote!({
        macro_rules! m {
            () => {
                loop {}
            };
        }
        let _ = x != y;
        ::my::spin!(loop {});
    }));
    assert_eq!(found.unseen.map(|u| u.0).as_deref(), Some("::my::spin"));
}

#[test]
fn a_body_that_does_not_parse_still_gets_its_beats() {
    let (found, s) = injected(quote!({
        let x = ;
        loop { step() }
    }));
    assert_eq!(found.loops, 1);
    assert!(s.contains("loop{beat();step()}"), "{s}");
}
