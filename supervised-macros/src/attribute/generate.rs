//! The expansion: a fn with the same name and arguments that returns a
//! `Task` whose attempts run the body.

use proc_macro2::{Delimiter, Group, Literal, Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Attribute, FnArg, Ident, Signature, Visibility};

use super::rename;
use super::signature::Plan;
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

    let must_use = (!attrs.iter().any(|a| a.path().is_ident("must_use"))).then(|| {
        // A literal built, not lexed from a string: the cheaper path.
        let reason = Literal::string("a `Task` does nothing until it is run or spawned");
        quote!(#[must_use = #reason])
    });

    // Each argument is cloned for each attempt through one generic helper,
    // whose bound is the one check of its type; the call carries the
    // argument's span, so the message points at it.
    let mut clones = Vec::new();
    let mut keep_receiver = None;
    if let Some(r) = &plan.receiver {
        let kept = Ident::new("__supervised_self", Span::mixed_site());
        let self_token = r.token;
        keep_receiver = Some(quote!(let #kept = #self_token;));
        let renamed = rename::renamed(r.token.span);
        let mutability = r.mutability.filter(|_| instrument.is_none());
        let clone = quote_spanned!(r.ty.span()=> #pm::arg(&#kept));
        clones.push(quote!(let #mutability #renamed = #clone;));
    }
    for a in &plan.args {
        let mutability = a.mutability.filter(|_| instrument.is_none());
        let (ident, cfgs) = (&a.ident, &a.cfgs);
        let clone = quote_spanned!(a.ty.span()=> #pm::arg(&#ident));
        clones.push(quote!(#(#cfgs)* let #mutability #ident = #clone;));
    }

    // The value of the user's `Context` parameter.
    let user_ctx_value = plan.ctx.as_ref().map(|c| {
        let value = if beats > 0 {
            quote!(::core::clone::Clone::clone(&#ctx))
        } else {
            quote!(#ctx)
        };
        let ty = &c.ty;
        quote_spanned!(c.ty.span()=> #pm::context::<#ty>(#value))
    });
    let uses_ctx = plan.ctx.is_some() || beats > 0;
    let ctx_param = if uses_ctx { quote!(#ctx) } else { quote!(_) };

    let mut spec = spec_calls(args, &pm);
    if beats == 0 && !plan.ctx.as_ref().is_some_and(|c| c.usable()) {
        // Nothing in the fn can beat: readiness must not wait for a beat.
        spec.extend(quote!(.without_heartbeat()));
    }
    let output = &plan.output;
    let output_span = output.span();

    let mut nested = None;
    let mut sibling = None;
    let attempt = match &instrument {
        None => {
            let bind_ctx = plan.ctx.as_ref().map(|c| {
                let (pat, ty, cfgs) = (&c.pat, &c.ty, &c.cfgs);
                quote!(#(#cfgs)* let #pat: #ty = #user_ctx_value;)
            });
            let attempt = quote_spanned!(output_span=> #pm::attempt::<#output>(#pm::Box::new(async move #body)));
            quote! {
                #bind_ctx
                #attempt
            }
        }
        Some(attr) => {
            // One `async fn` per attempt, carrying the user's attribute.
            let inner = format_ident!("__supervised_attempt_{}", fn_name.unraw());
            let hidden = (beats > 0).then_some(&ctx);
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
                        call.push(user_ctx_value.clone().into_token_stream())
                    }
                    // The argument's name, without its `mut`.
                    (_, syn::Pat::Ident(p)) => call.push(p.ident.to_token_stream()),
                    (_, pat) => call.push(pat.to_token_stream()),
                }
            }
            let generics = &sig.generics;
            let where_clause = &sig.generics.where_clause;
            let user_output = &sig.output;
            let def = quote! {
                #attr
                #[allow(clippy::too_many_arguments)]
                async fn #inner #generics (#(#params),*) #user_output #where_clause #body
            };
            let turbofish = turbofish(&sig);
            let call = if plan.receiver.is_some() || names_self {
                sibling = Some(quote!(#[doc(hidden)] #def));
                quote!(Self::#inner #turbofish (#(#call),*))
            } else {
                nested = Some(def);
                quote!(#inner #turbofish (#(#call),*))
            };
            quote_spanned!(output_span=> #pm::attempt::<#output>(#pm::Box::new(#call)))
        }
    };

    let closure = quote! {
        move |#ctx_param: #pm::Context| {
            #(#clones)*
            #attempt
        }
    };
    let task =
        quote!(#pm::Task::from_outcomes(#pm::Spec::new(#task_name) #spec, #pm::Box::new(#closure)));
    let fn_token = sig.fn_token;
    let generics = &sig.generics;
    let where_clause = &sig.generics.where_clause;
    let params = &plan.params;
    // The body's braces keep the user's span: rustc's suggestions about the
    // fn (e.g. on `.await` of the task) then point at the fn, not at the
    // attribute.
    let mut fn_body = Group::new(
        Delimiter::Brace,
        quote! {
            #nested
            #keep_receiver
            #task
        },
    );
    fn_body.set_span(body_span);
    quote! {
        #must_use
        #(#attrs)*
        #vis #fn_token #fn_name #generics (#(#params),*) -> #pm::Task #where_clause #fn_body
        #sibling
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

fn duration(pm: &Trees, d: Dur) -> TokenStream {
    let secs = Literal::u64_unsuffixed(d.secs);
    let nanos = Literal::u32_unsuffixed(d.nanos);
    quote!(#pm::Duration::new(#secs, #nanos))
}

fn spec_calls(args: &Args, pm: &Trees) -> TokenStream {
    let mut calls = TokenStream::new();
    let dur_call = |calls: &mut TokenStream, method: &str, given: &Option<Given<Dur>>| {
        if let Some(g) = given {
            let method = Ident::new(method, g.key);
            let d = duration(pm, g.value);
            calls.extend(quote!(.#method(#d)));
        }
    };
    dur_call(&mut calls, "backoff_initial", &args.backoff_initial);
    dur_call(&mut calls, "backoff_max", &args.backoff_max);
    if let Some(g) = &args.jitter {
        let v = Ident::new(g.value, g.span);
        calls.extend(quote!(.jitter(#pm::Jitter::#v)));
    }
    dur_call(&mut calls, "reset_after", &args.reset_after);
    if let Some(g) = &args.restart {
        let v = Ident::new(g.value, g.span);
        calls.extend(quote!(.restart(#pm::RestartPolicy::#v)));
    }
    if let (Some(max), Some(within)) = (&args.max_restarts, &args.within) {
        let n = Literal::u32_unsuffixed(max.value);
        let d = duration(pm, within.value);
        calls.extend(quote!(.max_restarts(#n, #d)));
    }
    dur_call(&mut calls, "stale_after", &args.stale_after);
    if let Some(g) = &args.on_stale {
        let v = Ident::new(g.value, g.span);
        calls.extend(quote!(.on_stale(#pm::OnStale::#v)));
    }
    dur_call(&mut calls, "grace", &args.grace);
    dur_call(&mut calls, "blocking_after", &args.blocking_after);
    if args.quarantine_initial.is_some() || args.quarantine_max.is_some() {
        let initial = match &args.quarantine_initial {
            Some(g) => duration(pm, g.value),
            None => quote!(#pm::DEFAULT_QUARANTINE_INITIAL),
        };
        let max = match &args.quarantine_max {
            Some(g) => duration(pm, g.value),
            None => quote!(#pm::DEFAULT_QUARANTINE_MAX),
        };
        calls.extend(quote!(.quarantine(#initial, #max)));
    }
    if args.singleton.as_ref().is_some_and(|g| g.value) {
        calls.extend(quote!(.singleton_from_group()));
    }
    calls
}
