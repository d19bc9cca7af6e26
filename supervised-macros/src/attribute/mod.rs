//! `#[supervised]`: checks the async fn and rewrites it into a fn returning a
//! `Task`.
//!
//! One mistake gives one error: when the arguments or the signature are
//! wrong, the errors are emitted next to the rewritten signature (a fn with
//! the same name and arguments that returns a `Task`, body unreachable), so
//! call sites see the fn they expect and add nothing. A body that does not
//! parse is kept as tokens, so that rustc reports its syntax error itself.

use proc_macro2::{Delimiter, Group, Span, TokenStream, TokenTree};
use quote::{quote, ToTokens};
use syn::parse::discouraged::Speculative;
use syn::parse::{Parse, ParseStream};
use syn::{Attribute, Block, Signature, Token, Visibility};

use crate::args::Args;
use crate::errors::Errors;
use crate::heartbeat;

mod generate;
mod instrument;
mod out;
mod rename;
mod signature;
#[cfg(test)]
mod tests;

use generate::{hidden_ctx, Parts};
use signature::Plan;

/// An `async fn`, its body kept as tokens: the body is walked, not parsed
/// (which is most of the attribute's cost), and one that does not parse is
/// left for rustc to report.
struct LenientFn {
    /// Outer attributes, then the body's inner ones (which apply to the fn).
    attrs: Vec<Attribute>,
    vis: Visibility,
    sig: Signature,
    /// The body, braces included, without its inner attributes.
    body: Group,
}

/// The fn's attributes, visibility and signature.
type Head = (Vec<Attribute>, Visibility, Signature);

fn parse_head(input: ParseStream<'_>) -> syn::Result<Head> {
    let attrs = input.call(Attribute::parse_outer)?;
    let vis: Visibility = input.parse()?;
    let fork = input.fork();
    let sig = match plain_signature(&fork) {
        Ok(Some(sig)) if fork.is_empty() => {
            input.advance_to(&fork);
            sig
        }
        _ => input.parse()?,
    };
    Ok((attrs, vis, sig))
}

/// The signature written most often, `async fn name(a: A, mut b: B) -> T`,
/// read without `syn`'s general parser, which tries every form a parameter
/// can take and is most of the attribute's cost in a debug build. `None`
/// for any other shape (generics, qualifiers, receivers, patterns,
/// attributes on parameters), which the general parser then reads.
fn plain_signature(input: ParseStream<'_>) -> syn::Result<Option<Signature>> {
    use syn::punctuated::Punctuated;
    use syn::{FnArg, Pat, PatIdent, PatType, ReturnType};

    if !input.peek(Token![async]) {
        return Ok(None);
    }
    let asyncness: Token![async] = input.parse()?;
    if !input.peek(Token![fn]) {
        return Ok(None);
    }
    let fn_token: Token![fn] = input.parse()?;
    let ident: syn::Ident = input.parse()?;
    if !input.peek(syn::token::Paren) {
        return Ok(None);
    }
    let content;
    let paren_token = syn::parenthesized!(content in input);
    let mut inputs = Punctuated::new();
    while !content.is_empty() {
        let mutability: Option<Token![mut]> = content.parse()?;
        // `self`, `_` and keywords are not plain names; a name from a
        // `macro_rules!` fragment comes in an invisible group syn keeps;
        // `a:::T` is not `a: ::T`.
        if content.peek(syn::token::Group)
            || !content.peek(syn::Ident)
            || !content.peek2(Token![:])
            || content.peek2(Token![::])
        {
            return Ok(None);
        }
        let name: syn::Ident = content.parse()?;
        let colon_token: Token![:] = content.parse()?;
        let ty = plain_type(&content)?;
        inputs.push_value(FnArg::Typed(PatType {
            attrs: Vec::new(),
            pat: Box::new(Pat::Ident(PatIdent {
                attrs: Vec::new(),
                by_ref: None,
                mutability,
                ident: name,
                subpat: None,
            })),
            colon_token,
            ty: Box::new(ty),
        }));
        if content.is_empty() {
            break;
        }
        inputs.push_punct(content.parse::<Token![,]>()?);
    }
    let output = if input.peek(Token![->]) {
        let arrow: Token![->] = input.parse()?;
        ReturnType::Type(arrow, Box::new(plain_type(input)?))
    } else {
        ReturnType::Default
    };
    Ok(Some(Signature {
        constness: None,
        asyncness: Some(asyncness),
        unsafety: None,
        abi: None,
        fn_token,
        ident,
        generics: syn::Generics::default(),
        paren_token,
        inputs,
        variadic: None,
        output,
    }))
}

/// A type: a lone name (`u64`, `Context`, `Self`) directly, any other by
/// `syn` (keywords, and a type from a `macro_rules!` fragment, which comes
/// in an invisible group that `syn` keeps).
fn plain_type(input: ParseStream<'_>) -> syn::Result<syn::Type> {
    let lone = input.cursor().ident().and_then(|(ident, rest)| {
        let ends = rest.eof() || rest.punct().is_some_and(|(p, _)| p.as_char() == ',');
        ends.then_some(ident)
    });
    let plain =
        !input.peek(syn::token::Group) && (input.peek(syn::Ident) || input.peek(Token![Self]));
    match lone {
        Some(ident) if plain => {
            input.step(|cursor| Ok(((), cursor.ident().map_or(*cursor, |(_, rest)| rest))))?;
            Ok(syn::Type::Path(syn::TypePath {
                qself: None,
                path: ident.into(),
            }))
        }
        _ => input.parse(),
    }
}

impl Parse for LenientFn {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let head = parse_head(input)?;
        let group: Group = input.parse()?;
        if group.delimiter() != proc_macro2::Delimiter::Brace {
            return Err(syn::Error::new(group.span(), "expected the fn's body"));
        }
        Ok(LenientFn::new(head, &group))
    }
}

impl LenientFn {
    /// Parses the fn's head with `syn` and keeps its body as tokens, never
    /// buffering them: the body is most of the fn.
    fn split(item: TokenStream) -> syn::Result<Self> {
        let mut trees: Vec<TokenTree> = item.clone().into_iter().collect();
        let body = match trees.pop() {
            Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Brace => g,
            _ => return syn::parse2(item),
        };
        let head = syn::parse::Parser::parse2(parse_head, trees.into_iter().collect())?;
        Ok(LenientFn::new(head, &body))
    }

    /// The fn, the inner attributes of its body moved out to the others.
    fn new((mut attrs, vis, sig): Head, body: &Group) -> Self {
        let (inner, body) = take_inner_attrs(body);
        attrs.extend(inner);
        LenientFn {
            attrs,
            vis,
            sig,
            body,
        }
    }
}

/// The inner attributes at the start of `body` (`#![..]`), as outer ones,
/// and the body without them.
fn take_inner_attrs(body: &Group) -> (Vec<Attribute>, Group) {
    let mut tokens = body.stream().into_iter().peekable();
    let mut attrs = Vec::new();
    let mut rest = Vec::new();
    loop {
        match (tokens.next(), tokens.peek()) {
            (Some(TokenTree::Punct(hash)), Some(TokenTree::Punct(bang)))
                if hash.as_char() == '#' && bang.as_char() == '!' =>
            {
                let bang = tokens.next();
                match tokens.next() {
                    Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Bracket => {
                        let outer: TokenStream = [TokenTree::Punct(hash), TokenTree::Group(g)]
                            .into_iter()
                            .collect();
                        match syn::parse::Parser::parse2(Attribute::parse_outer, outer) {
                            Ok(parsed) => attrs.extend(parsed),
                            Err(_) => return (Vec::new(), body.clone()),
                        }
                    }
                    other => {
                        rest.extend([TokenTree::Punct(hash)]);
                        rest.extend(bang);
                        rest.extend(other);
                        break;
                    }
                }
            }
            (Some(first), _) => {
                rest.push(first);
                break;
            }
            (None, _) => break,
        }
    }
    if attrs.is_empty() {
        return (attrs, body.clone());
    }
    rest.extend(tokens);
    let mut stripped = Group::new(Delimiter::Brace, rest.into_iter().collect());
    stripped.set_span(body.span());
    (attrs, stripped)
}

/// Whether `body` parses as a block, for the rare checks that need to
/// know.
fn parses(body: &Group) -> bool {
    syn::parse2::<Block>(TokenTree::Group(body.clone()).into()).is_ok()
}

/// Expands `#[supervised(attr)] item`.
pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let args = Args::parse(attr, &mut errors);
    let mut func = match LenientFn::split(item.clone()) {
        Ok(func) => func,
        Err(_) => {
            let first = item.clone().into_iter().next();
            let span = first.map_or_else(Span::call_site, |t| t.span());
            errors.at(
                span,
                "`#[supervised]` goes on an `async fn` with a body, e.g. \
                 `async fn worker(ctx: Context) { ... }`",
            );
            let errors = errors.finish().err().map(|e| e.to_compile_error());
            return quote!(#errors #item);
        }
    };

    if instrument::instrumented_above(&func.body) {
        errors.at(
            func.sig.ident.span(),
            "`#[tracing::instrument]` is written above `#[supervised]`, so it would \
             instrument the call that builds the task, not its attempts: move it below \
             `#[supervised]`",
        );
    }
    let instrument = instrument::take(&mut func.attrs);
    let plan = Plan::of(&func.sig, &mut errors);
    if instrument.is_some() {
        for arg in plan.args.iter().filter(|a| !a.cfgs.is_empty()) {
            errors.spanned(
                &arg.cfgs[0],
                "`#[cfg]` on a parameter cannot be combined with `#[tracing::instrument]` \
                 on a `#[supervised]` fn: remove one of them",
            );
        }
    }

    // Only the per-attempt fn of `#[instrument]` needs to know.
    let names_self = instrument.is_some() && crate::tokens::mentions(&item, &["Self"]);
    let krate = args.krate();
    let ctx = hidden_ctx();
    let beat = quote!(#krate::__private::Context::heartbeat(&#ctx));
    let found = if args.auto_heartbeat() {
        let (body, found) = heartbeat::inject(&func.body, &beat);
        func.body = body;
        found
    } else {
        heartbeat::Injected::default()
    };
    let can_beat = found.loops > 0 || plan.ctx.as_ref().is_some_and(|c| c.usable());
    if !can_beat {
        // A body that does not parse gets rustc's error alone.
        if let Some(key) = args.stale_after_key().filter(|_| parses(&func.body)) {
            errors.at(key, no_heartbeat_site(&func.sig, found.unseen.as_ref()));
        }
    }

    if !errors.is_empty() {
        return with_signature(errors, func, &plan, &args);
    }

    // Inside the attempt's closure, `self` is each attempt's clone.
    let mut body = TokenStream::from(TokenTree::Group(func.body.clone()));
    if plan.receiver.is_some() && instrument.is_none() {
        body = match syn::parse2::<Block>(body.clone()) {
            Ok(mut block) => {
                rename::rename_self(&mut block);
                block.into_token_stream()
            }
            Err(_) => {
                let mut renamed = Group::new(
                    Delimiter::Brace,
                    rename::rename_self_tokens(func.body.stream()),
                );
                renamed.set_span(func.body.span());
                TokenTree::Group(renamed).into()
            }
        };
    }
    let parts = Parts {
        attrs: func.attrs,
        vis: func.vis,
        sig: func.sig,
        body_span: func.body.span(),
        body,
        beats: found.loops,
        instrument,
        names_self,
    };
    generate::generate(parts, &args, &plan)
}

/// The message for a fn with `stale_after` that nothing can beat for.
fn no_heartbeat_site(sig: &Signature, unseen: Option<&(String, Span)>) -> String {
    let name = &sig.ident;
    let unseen = match unseen {
        Some((path, _)) => format!(
            " (the loop inside `{path}!` is not seen: `#[supervised]` cannot instrument \
             loops inside macros)"
        ),
        None => String::new(),
    };
    format!(
        "`fn {name}` has no heartbeat, so it would always be stale: it has no loop \
         `#[supervised]` instruments{unseen} and no `Context` parameter. Add `ctx: \
         Context` and call `ctx.heartbeat()` where the task makes progress, or write the \
         loop in the fn's own body (not inside a macro, closure or async block)"
    )
}

/// The errors, and the fn the call sites expect: same name and arguments,
/// returning a `Task`, body unreachable.
fn with_signature(errors: Errors, func: LenientFn, plan: &Plan, args: &Args) -> TokenStream {
    let errors = errors.finish().err().map(|e| e.to_compile_error());
    let krate = args.krate();
    let body_span = func.body.span();
    let LenientFn {
        attrs, vis, sig, ..
    } = func;
    let fn_token = sig.fn_token;
    let name = &sig.ident;
    let generics = &sig.generics;
    let where_clause = &sig.generics.where_clause;
    let params = &plan.params;
    let dropped = &plan.dropped;
    let mention = (!dropped.is_empty()).then(
        || quote!(let _: ::core::option::Option<(#(#dropped,)*)> = ::core::option::Option::None;),
    );
    let mut body = Group::new(
        proc_macro2::Delimiter::Brace,
        quote!(#mention ::core::unreachable!()),
    );
    body.set_span(body_span);
    quote! {
        #errors
        #(#attrs)*
        #[allow(unused_variables, clippy::diverging_sub_expression)]
        #vis #fn_token #name #generics (#(#params),*) -> #krate::__private::Task #where_clause #body

    }
}
