//! The expansion: a fn with the same name and arguments that returns a
//! `Task` whose attempts run the body.

use proc_macro2::{Delimiter, Literal, Span, TokenStream, TokenTree};
use quote::{format_ident, quote, ToTokens};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Attribute, FnArg, Ident, Signature, Visibility};

use super::out::Out;
use super::rename;
use super::signature::{CtxParam, Plan};
use crate::args::{Args, Given};
use crate::duration::Dur;

/// The parts of the fn that reach the expansion, once checked.
pub(super) struct Parts {
    pub(super) attrs: Vec<Attribute>,
    pub(super) vis: Visibility,
    pub(super) sig: Signature,
    /// The body, braces included: heartbeats injected, and `self` renamed
    /// when the body runs inside the attempt's closure.
    pub(super) body: TokenStream,
    /// How many loops of the body record a heartbeat.
    pub(super) beats: usize,
    /// A `#[tracing::instrument]` written below `#[supervised]`.
    pub(super) instrument: Option<Attribute>,
    /// The body or signature names `Self`.
    pub(super) names_self: bool,
    /// The span of the body's braces.
    pub(super) body_span: Span,
}

/// A short run of tokens interpolated many times (the path of
/// `__private`): appended tree by tree, which is cheaper in the compiler's
/// token streams than joining a stream each time.
pub(super) struct Trees(Vec<TokenTree>);

impl Trees {
    pub(super) fn of(tokens: TokenStream) -> Trees {
        Trees(tokens.into_iter().collect())
    }
}

impl ToTokens for Trees {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        tokens.extend(self.0.iter().cloned());
    }
}

/// The name of the runtime's handle on the attempt, invisible to the user's
/// code.
pub(super) fn hidden_ctx() -> Ident {
    Ident::new("__supervised_ctx", Span::mixed_site())
}

pub(super) fn generate(parts: Parts, args: &Args, plan: &Plan) -> TokenStream {
    let Parts {
        attrs,
        vis,
        sig,
        body,
        beats,
        instrument,
        names_self,
        body_span,
    } = parts;
    let krate = args.krate();
    let pm = Trees::of(quote!(#krate::__private));
    let fn_name = &sig.ident;
    let task_name = match &args.name {
        Some(g) => syn::LitStr::new(&g.value, g.span),
        None => syn::LitStr::new(&fn_name.unraw().to_string(), fn_name.span()),
    };
    let ctx = hidden_ctx();
    let mut o = Out::new(Span::call_site());

    for attr in &attrs {
        o.tokens(attr);
    }
    o.tokens(&vis).tokens(sig.fn_token).tokens(fn_name);
    let generics = &sig.generics;
    o.tokens(generics);
    o.group(Delimiter::Parenthesis, None, |o| {
        for (i, param) in plan.params.iter().enumerate() {
            if i > 0 {
                o.punct(",");
            }
            o.tokens(param);
        }
    });
    o.punct("->").private(&pm, "Task");
    o.tokens(&generics.where_clause);

    // The body's braces keep the user's span: rustc's suggestions about the
    // fn (e.g. on `.await` of the task) then point at the fn, not at the
    // attribute.
    let mut sibling = None;
    o.group(Delimiter::Brace, Some(body_span), |o| {
        let call = instrument.as_ref().map(|attr| {
            // Next to the fn, in the `impl`, when it needs `Self`; else
            // inside the generated fn.
            let as_method = plan.receiver.is_some() || names_self;
            let f = PerAttempt::of(&sig, plan, attr, beats, &pm, &ctx, &body, as_method);
            let def = f.def;
            if as_method {
                sibling = Some(quote!(#[doc(hidden)] #def));
            } else {
                o.tokens(def);
            }
            f.call
        });
        if let Some(r) = &plan.receiver {
            o.word("let").tokens(kept_receiver()).punct("=");
            o.tokens(r.token).punct(";");
        }
        o.private(&pm, "Task::from_outcomes");
        o.group(Delimiter::Parenthesis, None, |o| {
            spec(o, args, &pm, &task_name);
            if beats == 0 && !plan.ctx.as_ref().is_some_and(|c| c.usable()) {
                // Nothing in the fn can beat: readiness must not wait for a beat.
                o.punct(".").word("without_heartbeat");
                o.group(Delimiter::Parenthesis, None, |_| {});
            }
            o.punct(",").private(&pm, "Box::new");
            o.group(Delimiter::Parenthesis, None, |o| {
                factory(o, plan, instrument.is_some(), beats, &pm, &ctx, call, &body);
            });
        });
    });
    o.tokens(sibling);
    o.finish()
}

/// The factory of attempts: `move |ctx: Context| { clones; attempt }`.
#[allow(clippy::too_many_arguments)]
fn factory(
    o: &mut Out,
    plan: &Plan,
    instrumented: bool,
    beats: usize,
    pm: &Trees,
    ctx: &Ident,
    call: Option<TokenStream>,
    body: &TokenStream,
) {
    o.word("move").punct("|");
    if plan.ctx.is_some() || beats > 0 {
        o.tokens(ctx);
    } else {
        o.word("_");
    }
    o.punct(":").private(pm, "Context").punct("|");
    o.group(Delimiter::Brace, None, |o| {
        // Each argument is cloned for each attempt through one generic
        // helper, whose bound is the one check of its type; the call carries
        // the argument's span, so the message points at it.
        if let Some(r) = &plan.receiver {
            let mutability = r.mutability.filter(|_| !instrumented);
            o.word("let").tokens(mutability);
            o.tokens(rename::renamed(r.token.span)).punct("=");
            clone_arg(o, pm, type_span(&r.ty), &kept_receiver());
        }
        for a in &plan.args {
            let mutability = a.mutability.filter(|_| !instrumented);
            for cfg in &a.cfgs {
                o.tokens(cfg);
            }
            o.word("let").tokens(mutability).tokens(&a.ident).punct("=");
            clone_arg(o, pm, type_span(&a.ty), &a.ident);
        }
        let output = &plan.output;
        let output_span = type_span(output);
        if call.is_none() {
            if let Some(c) = &plan.ctx {
                for cfg in &c.cfgs {
                    o.tokens(cfg);
                }
                o.word("let")
                    .tokens(&c.pat)
                    .punct(":")
                    .tokens(&c.ty)
                    .punct("=");
                user_ctx_value(o, c, pm, ctx);
                o.punct(";");
            }
        }
        // The call carries the return type's span: an output that is not a
        // task's is reported there, once.
        o.spanned(output_span, |o| {
            o.private(pm, "attempt").punct("::").punct("<");
            o.tokens(output).punct(">");
            o.group(Delimiter::Parenthesis, None, |o| {
                o.private(pm, "Box::new");
                o.group(Delimiter::Parenthesis, None, |o| match call {
                    Some(call) => {
                        o.tokens(call);
                    }
                    None => {
                        o.word("async").word("move").tokens(body);
                    }
                });
            });
        });
    });
}

/// `__private::arg(&ident);`, spanned at the argument's type.
fn clone_arg(o: &mut Out, pm: &Trees, span: Span, ident: &Ident) {
    o.spanned(span, |o| {
        o.private(pm, "arg");
        o.group(Delimiter::Parenthesis, None, |o| {
            o.punct("&").tokens(ident);
        });
    });
    o.punct(";");
}

/// The value of the user's `Context` parameter:
/// `__private::context::<Ty>(&ctx)`, spanned at its type.
fn user_ctx_value(o: &mut Out, c: &CtxParam, pm: &Trees, ctx: &Ident) {
    o.spanned(type_span(&c.ty), |o| {
        o.private(pm, "context").punct("::").punct("<");
        o.tokens(&c.ty).punct(">");
        o.group(Delimiter::Parenthesis, None, |o| {
            o.spanned(Span::call_site(), |o| {
                o.punct("&").tokens(ctx);
            });
        });
    });
}

/// The span `syn` gives a type: the join of its first and last tokens'
/// where the compiler joins spans (nightly), else its first token's, which
/// is found here without printing the type when it is a path.
fn type_span(ty: &syn::Type) -> Span {
    let joins = Span::call_site().join(Span::call_site()).is_some();
    match ty {
        syn::Type::Path(p) if p.qself.is_none() && !joins => {
            match (&p.path.leading_colon, p.path.segments.first()) {
                (Some(colon), _) => colon.spans[0],
                (None, Some(first)) => first.ident.span(),
                (None, None) => ty.span(),
            }
        }
        _ => ty.span(),
    }
}

/// The receiver of a method, kept by the factory.
fn kept_receiver() -> Ident {
    Ident::new("__supervised_self", Span::mixed_site())
}

/// The `async fn` that runs each attempt when `#[tracing::instrument]` is
/// written below `#[supervised]`, carrying the user's attribute.
struct PerAttempt {
    def: TokenStream,
    /// Its call: `Self::name(..)` when it is defined next to the generated
    /// fn, in the `impl`; `name(..)` when inside it.
    call: TokenStream,
}

impl PerAttempt {
    #[allow(clippy::too_many_arguments)]
    fn of(
        sig: &Signature,
        plan: &Plan,
        attr: &Attribute,
        beats: usize,
        pm: &Trees,
        ctx: &Ident,
        body: &TokenStream,
        as_method: bool,
    ) -> PerAttempt {
        let fn_name = &sig.ident;
        let inner = format_ident!("__supervised_attempt_{}", fn_name.unraw());
        let hidden = (beats > 0).then_some(ctx);
        let attr = super::instrument::for_attempt(attr, &fn_name.unraw(), hidden);
        let mut params: Vec<TokenStream> = Vec::new();
        let mut call: Vec<TokenStream> = Vec::new();
        if let Some(FnArg::Receiver(r)) = sig.inputs.first() {
            params.push(r.to_token_stream());
            call.push(rename::renamed(r.self_token.span).to_token_stream());
        }
        if beats > 0 {
            params.push(quote!(#ctx: #pm::Context));
            call.push(if plan.ctx.is_some() {
                quote!(::core::clone::Clone::clone(&#ctx))
            } else {
                quote!(#ctx)
            });
        }
        for (i, input) in sig.inputs.iter().enumerate() {
            let FnArg::Typed(t) = input else { continue };
            let mut t = t.clone();
            t.attrs.retain(|a| !super::signature::is_context_marker(a));
            params.push(t.to_token_stream());
            match (&plan.ctx, &*t.pat) {
                (Some(c), _) if c.index == i => {
                    let mut value = Out::new(Span::call_site());
                    user_ctx_value(&mut value, c, pm, ctx);
                    call.push(value.finish());
                }
                // The argument's name, without its `mut`.
                (_, syn::Pat::Ident(p)) => call.push(p.ident.to_token_stream()),
                (_, pat) => call.push(pat.to_token_stream()),
            }
        }
        let generics = &sig.generics;
        let where_clause = &sig.generics.where_clause;
        let user_output = &sig.output;
        let turbofish = turbofish(sig);
        let path = if as_method {
            quote!(Self::#inner)
        } else {
            quote!(#inner)
        };
        PerAttempt {
            def: quote! {
                #attr
                #[allow(clippy::too_many_arguments)]
                async fn #inner #generics (#(#params),*) #user_output #where_clause #body
            },
            call: quote!(#path #turbofish (#(#call),*)),
        }
    }
}

/// `::<T, N>`, the fn's own type and const parameters, for the call of
/// the per-attempt fn: a parameter used only in the body cannot be inferred
/// there. Empty when the fn has none, or takes `impl Trait` arguments
/// (which forbid explicit generic arguments; their parameters are then
/// inferred from the arguments).
fn turbofish(sig: &Signature) -> TokenStream {
    let names: Vec<&Ident> = sig
        .generics
        .params
        .iter()
        .filter_map(|p| match p {
            syn::GenericParam::Type(t) => Some(&t.ident),
            syn::GenericParam::Const(c) => Some(&c.ident),
            syn::GenericParam::Lifetime(_) => None,
        })
        .collect();
    let impl_trait = sig.inputs.iter().any(|input| match input {
        FnArg::Typed(t) => crate::tokens::mentions(&t.ty.to_token_stream(), &["impl"]),
        FnArg::Receiver(_) => false,
    });
    if names.is_empty() || impl_trait {
        return TokenStream::new();
    }
    quote!(::<#(#names),*>)
}

/// `__private::Duration::new(secs, nanos)`.
fn duration(o: &mut Out, pm: &Trees, d: Dur) {
    o.private(pm, "Duration::new");
    o.group(Delimiter::Parenthesis, None, |o| {
        o.tokens(Literal::u64_unsuffixed(d.secs)).punct(",");
        o.tokens(Literal::u32_unsuffixed(d.nanos));
    });
}

/// The task's `Spec`: `__private::spec(name, &[(key, secs, nanos), ..])`
/// for the durations the attribute sets (one call with literals, cheaper
/// for rustc than a builder call and a `Duration::new` per key), or
/// `Spec::new(name)` when it sets none, then a builder call for each other
/// key.
fn spec(o: &mut Out, args: &Args, pm: &Trees, name: &syn::LitStr) {
    let durations: Vec<(&str, &Given<Dur>)> = [
        ("backoff_initial", &args.backoff_initial),
        ("backoff_max", &args.backoff_max),
        ("reset_after", &args.reset_after),
        ("stale_after", &args.stale_after),
        ("grace", &args.grace),
        ("blocking_after", &args.blocking_after),
    ]
    .into_iter()
    .filter_map(|(key, given)| given.as_ref().map(|g| (key, g)))
    .collect();
    if durations.is_empty() {
        o.private(pm, "Spec::new");
        o.group(Delimiter::Parenthesis, None, |o| {
            o.tokens(name);
        });
    } else {
        o.private(pm, "spec");
        o.group(Delimiter::Parenthesis, None, |o| {
            o.tokens(name).punct(",").punct("&");
            o.group(Delimiter::Bracket, None, |o| {
                for (i, (key, g)) in durations.iter().enumerate() {
                    if i > 0 {
                        o.punct(",");
                    }
                    // The key's literal carries the key's span.
                    let mut key = Literal::string(key);
                    key.set_span(g.key);
                    o.group(Delimiter::Parenthesis, None, |o| {
                        o.tokens(key).punct(",");
                        o.tokens(Literal::u64_unsuffixed(g.value.secs)).punct(",");
                        o.tokens(Literal::u32_unsuffixed(g.value.nanos));
                    });
                }
            });
        });
    }
    spec_calls(o, args, pm);
}

/// The builder calls for the keys that are not plain durations.
fn spec_calls(o: &mut Out, args: &Args, pm: &Trees) {
    // `.method(__private::Enum::Variant)`, the variant at the value's span.
    let variant_call = |o: &mut Out, method: &str, ty: &str, given: &Option<Given<&str>>| {
        if let Some(g) = given {
            o.punct(".").word(method);
            o.group(Delimiter::Parenthesis, None, |o| {
                o.private(pm, ty)
                    .punct("::")
                    .tokens(Ident::new(g.value, g.span));
            });
        }
    };
    variant_call(o, "jitter", "Jitter", &args.jitter);
    variant_call(o, "restart", "RestartPolicy", &args.restart);
    if let (Some(max), Some(within)) = (&args.max_restarts, &args.within) {
        o.punct(".").word("max_restarts");
        o.group(Delimiter::Parenthesis, None, |o| {
            o.tokens(Literal::u32_unsuffixed(max.value)).punct(",");
            duration(o, pm, within.value);
        });
    }
    variant_call(o, "on_stale", "OnStale", &args.on_stale);
    if args.quarantine_initial.is_some() || args.quarantine_max.is_some() {
        o.punct(".").word("quarantine");
        o.group(Delimiter::Parenthesis, None, |o| {
            match &args.quarantine_initial {
                Some(g) => duration(o, pm, g.value),
                None => {
                    o.private(pm, "DEFAULT_QUARANTINE_INITIAL");
                }
            }
            o.punct(",");
            match &args.quarantine_max {
                Some(g) => duration(o, pm, g.value),
                None => {
                    o.private(pm, "DEFAULT_QUARANTINE_MAX");
                }
            }
        });
    }
    if args.singleton.as_ref().is_some_and(|g| g.value) {
        o.punct(".").word("singleton_from_group");
        o.group(Delimiter::Parenthesis, None, |_| {});
    }
}
