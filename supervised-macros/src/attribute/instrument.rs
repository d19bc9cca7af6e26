//! `#[tracing::instrument]` together with `#[supervised]`.
//!
//! Written below `#[supervised]`, it is moved onto a generated `async fn` that
//! runs one attempt, so its span is entered, and its fields recorded, for
//! every attempt. Written above, it would instrument the call that builds the
//! task: that is reported, with the fix.

use proc_macro2::{Delimiter, Group, Ident, TokenStream, TokenTree};
use quote::quote;
use syn::{Attribute, Meta};

/// `instrument`, `tracing::instrument`, `::tracing::instrument`,
/// `tracing_attributes::instrument`.
fn is_instrument(attr: &Attribute) -> bool {
    let path = attr.path();
    let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    match segments.as_slice() {
        [last] => last == "instrument" && path.leading_colon.is_none(),
        [krate, last] => {
            last == "instrument" && (krate == "tracing" || krate == "tracing_attributes")
        }
        _ => false,
    }
}

/// Removes the `#[instrument]` attribute from `attrs` and returns it.
pub(super) fn take(attrs: &mut Vec<Attribute>) -> Option<Attribute> {
    let at = attrs.iter().position(is_instrument)?;
    Some(attrs.remove(at))
}

/// `true` when the body has been through `#[instrument]` already, i.e.
/// `#[instrument]` was written above `#[supervised]`: its expansion starts
/// by binding the span to `__tracing_attr_span`. Only the body's own
/// statements are looked at (not nested blocks), so that the check costs
/// little on other bodies.
pub(super) fn instrumented_above(body: &Group) -> bool {
    let mut after_let = false;
    body.stream().into_iter().any(|t| match t {
        TokenTree::Ident(i) => {
            let hit = after_let && i == "__tracing_attr_span";
            after_let = i == "let" || (after_let && i == "mut");
            hit
        }
        _ => {
            after_let = false;
            false
        }
    })
}

/// The attribute for the fn that runs one attempt: the span is named after
/// the task's fn unless the user named it, and `hidden` (the runtime's own
/// handle on the attempt) is never recorded as a field.
pub(super) fn for_attempt(attr: &Attribute, fn_name: &Ident, hidden: Option<&Ident>) -> Attribute {
    let (path, tokens) = match &attr.meta {
        Meta::List(list) => (list.path.clone(), list.tokens.clone()),
        other => (other.path().clone(), TokenStream::new()),
    };
    let items = split_commas(tokens);
    let key = |item: &[TokenTree], name: &str| matches!(item.first(), Some(TokenTree::Ident(i)) if i == name);
    let mut out: Vec<TokenStream> = Vec::new();
    if !items.iter().any(|i| key(i, "name")) {
        let name = syn::LitStr::new(&fn_name.to_string(), fn_name.span());
        out.push(quote!(name = #name));
    }
    let skips_all = items.iter().any(|i| key(i, "skip_all"));
    let mut skipped = false;
    for item in items {
        match (hidden, key(&item, "skip"), item.get(1)) {
            (Some(hidden), true, Some(TokenTree::Group(g)))
                if g.delimiter() == Delimiter::Parenthesis && !skips_all =>
            {
                let inner = g.stream();
                let mut group = Group::new(Delimiter::Parenthesis, quote!(#inner, #hidden));
                group.set_span(g.span());
                let first = &item[0];
                let rest = item[2..].iter();
                out.push(quote!(#first #group #(#rest)*));
                skipped = true;
            }
            _ => out.push(item.into_iter().collect()),
        }
    }
    if let (Some(hidden), false, false) = (hidden, skipped, skips_all) {
        out.push(quote!(skip(#hidden)));
    }
    let pound = attr.pound_token;
    syn::parse_quote!(#pound [#path(#(#out),*)])
}

/// The comma-separated items of an attribute's arguments.
fn split_commas(tokens: TokenStream) -> Vec<Vec<TokenTree>> {
    let mut items = vec![Vec::new()];
    for token in tokens {
        match &token {
            TokenTree::Punct(p) if p.as_char() == ',' => items.push(Vec::new()),
            _ => items.last_mut().expect("one item").push(token),
        }
    }
    items.retain(|i| !i.is_empty());
    items
}

#[cfg(test)]
mod tests {
    use super::*;
    use proc_macro2::Span;
    use quote::ToTokens;

    fn rewrite(attr: Attribute, hidden: bool) -> String {
        let fn_name = Ident::new("relay", Span::call_site());
        let hidden_ident = Ident::new("__supervised_ctx", Span::call_site());
        for_attempt(&attr, &fn_name, hidden.then_some(&hidden_ident))
            .to_token_stream()
            .to_string()
            .replace(' ', "")
    }

    #[test]
    fn the_span_is_named_after_the_fn_and_skips_the_hidden_context() {
        assert_eq!(
            rewrite(syn::parse_quote!(#[tracing::instrument]), true),
            "#[tracing::instrument(name=\"relay\",skip(__supervised_ctx))]"
        );
        assert_eq!(
            rewrite(
                syn::parse_quote!(#[instrument(skip(db), level = "debug")]),
                true
            ),
            "#[instrument(name=\"relay\",skip(db,__supervised_ctx),level=\"debug\")]"
        );
        assert_eq!(
            rewrite(syn::parse_quote!(#[instrument(name = "x", skip_all)]), true),
            "#[instrument(name=\"x\",skip_all)]"
        );
        assert_eq!(
            rewrite(syn::parse_quote!(#[instrument(fields(a = 1))]), false),
            "#[instrument(name=\"relay\",fields(a=1))]"
        );
    }

    #[test]
    fn only_tracing_s_instrument_is_recognised() {
        let yes: [Attribute; 3] = [
            syn::parse_quote!(#[instrument]),
            syn::parse_quote!(#[tracing::instrument(skip_all)]),
            syn::parse_quote!(#[tracing_attributes::instrument]),
        ];
        assert!(yes.iter().all(is_instrument));
        let no: [Attribute; 2] = [
            syn::parse_quote!(#[my::instrument]),
            syn::parse_quote!(#[doc = "instrument"]),
        ];
        assert!(!no.iter().any(is_instrument));
    }
}
