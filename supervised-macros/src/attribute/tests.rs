//! The signature's quick reader, checked against `syn`'s parser, and the
//! expansion's builder.

use super::*;
use proc_macro2::Spacing;
use syn::parse::Parser;

/// The signature read by `parse_head`, and whether the quick reader took
/// it.
fn read(head: &str) -> (String, bool) {
    let tokens: TokenStream = head.parse().unwrap();
    let quick = (|input: ParseStream<'_>| {
        let fork = input.fork();
        let taken = matches!(plain_signature(&fork), Ok(Some(_))) && fork.is_empty();
        input.parse::<TokenStream>()?;
        Ok(taken)
    })
    .parse2(tokens.clone())
    .unwrap();
    let (_, _, sig) = parse_head.parse2(tokens).unwrap();
    (sig.to_token_stream().to_string(), quick)
}

fn syn_reads(head: &str) -> String {
    let sig: Signature = syn::parse_str(head).unwrap();
    sig.to_token_stream().to_string()
}

#[test]
fn plain_signatures_are_read_as_syn_reads_them() {
    for head in [
        "async fn a()",
        "async fn a(ctx: Context)",
        "async fn a(ctx: Context, every: u64, label: String) -> Result<(), String>",
        "async fn a(mut n: u32) -> Infallible",
        "async fn r#type(r#in: u8)",
        "async fn a(ctx: Context,)",
        "async fn a(x: Vec<u8>, y: (u8, u16), z: &'static str, w: [u8; 4])",
        "async fn a(s: impl Store + Clone, f: fn(u8) -> u8, d: Box<dyn Send>)",
        "async fn a(p: std::path::PathBuf, q: ::std::sync::Arc<Self>) -> JobResult",
        "async fn a() -> ()",
    ] {
        let (sig, quick) = read(head);
        assert_eq!(sig, syn_reads(head), "{head}");
        assert!(quick, "the quick reader takes `{head}`");
    }
}

#[test]
fn other_signatures_go_to_syn() {
    for head in [
        "fn a()",
        "async unsafe fn a()",
        "const async fn a()",
        "async fn a<S: Store>(s: S)",
        "async fn a(s: S) where S: Store",
        "async fn a(self: Arc<Self>)",
        "async fn a(mut self)",
        "async fn a(_: Context)",
        "async fn a((x, y): (u8, u8))",
        "async fn a(#[context] ctx: Ctx)",
        "async fn a(#[cfg(unix)] fd: i32)",
        "async fn a(x: u8, ...)",
        "async fn a(b:::T)",
        "async fn a(x: for)",
        "async fn a(x: struct, y: u8)",
        "async fn a(x: u8) -> where",
        "async fn a(x: u8) -> unsafe",
    ] {
        let tokens: TokenStream = head.parse().unwrap();
        if let Ok((_, _, sig)) = parse_head.parse2(tokens) {
            assert_eq!(sig.to_token_stream().to_string(), syn_reads(head), "{head}");
        }
        assert!(!read_quick(head), "the quick reader leaves `{head}` to syn");
    }
}

/// Whether the quick reader takes all of `head`.
fn read_quick(head: &str) -> bool {
    let tokens: TokenStream = head.parse().unwrap();
    (|input: ParseStream<'_>| {
        let taken = matches!(plain_signature(input), Ok(Some(_))) && input.is_empty();
        input.parse::<TokenStream>()?;
        Ok(taken)
    })
    .parse2(tokens)
    .unwrap_or(false)
}

/// A type or a name from a `macro_rules!` fragment (`$t:ty`, `$p:pat`)
/// comes in an invisible group; the signature read keeps it where `syn`
/// keeps it.
#[test]
fn fragments_in_invisible_groups_are_read_as_syn_reads_them() {
    fn invisible_groups(tokens: TokenStream) -> usize {
        tokens
            .into_iter()
            .map(|t| match t {
                TokenTree::Group(g) => {
                    usize::from(g.delimiter() == Delimiter::None) + invisible_groups(g.stream())
                }
                _ => 0,
            })
            .sum()
    }
    let invisible = |tokens: TokenStream| TokenTree::Group(Group::new(Delimiter::None, tokens));
    let ty = invisible(quote!(u64));
    let pat = invisible(quote!(x));
    for head in [
        quote!(async fn a(x: #ty)),
        quote!(async fn a() -> #ty),
        quote!(async fn a(#pat: u64)),
    ] {
        let (_, _, ours) = parse_head.parse2(head.clone()).unwrap();
        let theirs: Signature = syn::parse2(head.clone()).unwrap();
        assert_eq!(
            invisible_groups(ours.to_token_stream()),
            invisible_groups(theirs.to_token_stream()),
            "{head}"
        );
    }
}

#[test]
fn the_builder_joins_punctuation_and_nests_groups() {
    let mut o = out::Out::new(Span::call_site());
    o.path("::core::clone::Clone::clone").punct("->");
    o.group(Delimiter::Parenthesis, None, |o| {
        o.word("a").punct(",").tokens(quote!(b));
    });
    let tokens = o.finish();
    assert_eq!(
        tokens.to_string(),
        ":: core :: clone :: Clone :: clone -> (a , b)"
    );
    let spacings: Vec<Spacing> = tokens
        .into_iter()
        .filter_map(|t| match t {
            TokenTree::Punct(p) => Some(p.spacing()),
            _ => None,
        })
        .take(4)
        .collect();
    assert_eq!(
        spacings,
        [
            Spacing::Joint,
            Spacing::Alone,
            Spacing::Joint,
            Spacing::Alone
        ]
    );
}
