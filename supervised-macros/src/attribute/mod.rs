//! `#[supervised]`: checks the async fn and rewrites it into a fn returning a
//! `Task`.
//!
//! One mistake gives one error: when the arguments or the signature are
//! wrong, the errors are emitted next to the rewritten signature (a fn with
//! the same name and arguments that returns a `Task`, body unreachable), so
//! call sites see the fn they expect and add nothing. A body that does not
//! parse is kept as tokens, so that rustc reports its syntax error itself.

use proc_macro2::{Group, Span, TokenStream, TokenTree};
use quote::{quote, ToTokens};
use syn::parse::{Parse, ParseStream};
use syn::{AttrStyle, Attribute, Block, Signature, Visibility};

use crate::args::Args;
use crate::errors::Errors;
use crate::heartbeat;

mod generate;
mod instrument;
mod rename;
mod signature;

use generate::{hidden_ctx, Parts};
use signature::Plan;

/// An `async fn` whose body may not parse.
struct LenientFn {
    /// Outer attributes, then the body's inner ones (which apply to the fn).
    attrs: Vec<Attribute>,
    vis: Visibility,
    sig: Signature,
    body: Body,
}

pub(super) enum Body {
    Parsed(Block),
    /// The body as written, braces included, when it does not parse.
    Raw(Group),
}

impl Body {
    /// The span of the braces.
    fn span(&self) -> Span {
        match self {
            Body::Parsed(b) => b.brace_token.span.join(),
            Body::Raw(g) => g.span(),
        }
    }

    fn tokens(&self) -> TokenStream {
        match self {
            Body::Parsed(b) => b.to_token_stream(),
            Body::Raw(g) => TokenTree::Group(g.clone()).into(),
        }
    }
}

impl Parse for LenientFn {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut attrs = input.call(Attribute::parse_outer)?;
        let vis: Visibility = input.parse()?;
        let sig: Signature = input.parse()?;
        let group: Group = input.parse()?;
        if group.delimiter() != proc_macro2::Delimiter::Brace {
            return Err(syn::Error::new(group.span(), "expected the fn's body"));
        }
        let parsed = syn::parse::Parser::parse2(
            |content: ParseStream<'_>| {
                let inner = content.call(Attribute::parse_inner)?;
                let stmts = content.call(Block::parse_within)?;
                Ok((inner, stmts))
            },
            group.stream(),
        );
        let body = match parsed {
            Ok((inner, stmts)) => {
                attrs.extend(inner.into_iter().map(|mut a| {
                    a.style = AttrStyle::Outer;
                    a
                }));
                let brace_token = syn::token::Brace {
                    span: group.delim_span(),
                };
                Body::Parsed(Block { brace_token, stmts })
            }
            Err(_) => Body::Raw(group),
        };
        Ok(LenientFn {
            attrs,
            vis,
            sig,
            body,
        })
    }
}

/// Expands `#[supervised(attr)] item`.
pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let args = Args::parse(attr, &mut errors);
    let mut func = match syn::parse2::<LenientFn>(item.clone()) {
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
    let names_self = instrument.is_some() && names_self(&item);
    let krate = args.krate();
    let ctx = hidden_ctx();
    let beat = quote!(#krate::__private::Context::heartbeat(&#ctx));
    let found = match &mut func.body {
        Body::Parsed(block) if args.auto_heartbeat() => heartbeat::inject(block, &beat),
        _ => heartbeat::Injected::default(),
    };
    let can_beat = found.loops > 0 || plan.ctx.as_ref().is_some_and(|c| c.usable());
    if !can_beat && matches!(func.body, Body::Parsed(_)) {
        if let Some(key) = args.stale_after_key() {
            errors.at(key, no_heartbeat_site(&func.sig, found.unseen.as_ref()));
        }
    }

    if !errors.is_empty() {
        return with_signature(errors, func, &plan, &args);
    }

    // Inside the attempt's closure, `self` is each attempt's clone.
    if plan.receiver.is_some() && instrument.is_none() {
        match &mut func.body {
            Body::Parsed(block) => rename::rename_self(block),
            Body::Raw(group) => {
                let mut renamed = Group::new(
                    group.delimiter(),
                    rename::rename_self_tokens(group.stream()),
                );
                renamed.set_span(group.span());
                *group = renamed;
            }
        }
    }
    let parts = Parts {
        attrs: func.attrs,
        vis: func.vis,
        sig: func.sig,
        body_span: func.body.span(),
        body: func.body.tokens(),
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

/// `Self` anywhere in `tokens`.
fn names_self(tokens: &TokenStream) -> bool {
    tokens.clone().into_iter().any(|t| match t {
        TokenTree::Ident(i) => i == "Self",
        TokenTree::Group(g) => names_self(&g.stream()),
        _ => false,
    })
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
