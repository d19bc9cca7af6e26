//! `#[supervised]`: checks the async fn and rewrites it into a fn returning a
//! `Task`.

use proc_macro2::{Literal, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{
    AttrStyle, FnArg, GenericArgument, Ident, ItemFn, Pat, PatIdent, PathArguments, ReturnType,
    Type,
};

use crate::args::{Args, Given};
use crate::duration::Dur;
use crate::errors::Errors;
use crate::heartbeat;

/// Expands `#[supervised(attr)] item`. On any error, the errors are emitted
/// together with the item unchanged, so that no secondary errors follow.
pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let args = Args::parse(attr, &mut errors);
    let func = match syn::parse2::<ItemFn>(item.clone()) {
        Ok(func) => func,
        Err(_) => {
            let first = item.clone().into_iter().next();
            let span = first.map_or_else(Span::call_site, |t| t.span());
            errors.at(
                span,
                "`#[supervised]` goes on an `async fn` with a body, e.g. \
                 `async fn worker(ctx: Context) { ... }`",
            );
            return with_errors(errors, item);
        }
    };
    let plan = Plan::of(&func, &mut errors);
    if !errors.is_empty() {
        return with_errors(errors, item);
    }
    generate(func, &args, plan)
}

fn with_errors(errors: Errors, item: TokenStream) -> TokenStream {
    let errors = errors.finish().err().map(|e| e.to_compile_error());
    quote!(#errors #item)
}

/// What the signature holds, once checked.
struct Plan {
    /// The arguments cloned for each attempt: name, `mut`, type.
    args: Vec<Arg>,
    /// The `Context` parameter, if any: its pattern and type as written.
    ctx: Option<(Pat, Type)>,
    /// The declared return type; `()` when none is written.
    output: Type,
}

struct Arg {
    ident: Ident,
    mutability: Option<syn::Token![mut]>,
    ty: Type,
    attrs: Vec<syn::Attribute>,
}

impl Plan {
    fn of(func: &ItemFn, errors: &mut Errors) -> Plan {
        let sig = &func.sig;
        if sig.asyncness.is_none() {
            errors.at(
                sig.fn_token.span,
                "`#[supervised]` needs an `async fn`: write `async fn` here \
                 (the fn becomes one that returns a `supervised::Task`)",
            );
        }
        if let Some(c) = &sig.constness {
            errors.at(
                c.span,
                "a `#[supervised]` fn cannot be `const`: remove `const`",
            );
        }
        if let Some(u) = &sig.unsafety {
            errors.at(
                u.span,
                "a `#[supervised]` fn cannot be `unsafe`: remove `unsafe` and use an \
                 `unsafe` block inside the body",
            );
        }
        if let Some(abi) = &sig.abi {
            errors.spanned(
                abi,
                "a `#[supervised]` fn cannot have an ABI: remove the `extern`",
            );
        }
        if let Some(v) = &sig.variadic {
            errors.spanned(v, "a `#[supervised]` fn cannot be variadic");
        }
        if !sig.generics.params.is_empty() {
            errors.spanned(
                &sig.generics,
                "a `#[supervised]` fn cannot be generic: remove the parameters and use \
                 concrete types (for a trait, e.g. `Arc<dyn Trait + Send + Sync>`)",
            );
        } else if let Some(w) = &sig.generics.where_clause {
            errors.spanned(
                w,
                "a `#[supervised]` fn cannot have a `where` clause: remove it and use \
                 concrete types",
            );
        }

        let mut args = Vec::new();
        let mut ctx: Option<(Pat, Type)> = None;
        for input in &sig.inputs {
            let typed = match input {
                FnArg::Receiver(r) => {
                    errors.spanned(
                        r,
                        "`#[supervised]` cannot take `self`: write a free fn (outside the \
                         `impl`) and pass the state as an argument, e.g. `this: Arc<Self>`",
                    );
                    continue;
                }
                FnArg::Typed(typed) => typed,
            };
            let ty = &*typed.ty;
            if is_context(ty) {
                if ctx.is_some() {
                    errors.spanned(
                        typed,
                        "a second `Context` parameter: a `#[supervised]` fn receives one \
                         `Context`; remove this parameter and clone the first one if needed",
                    );
                } else if ctx_pattern_ok(&typed.pat) {
                    ctx = Some(((*typed.pat).clone(), ty.clone()));
                } else {
                    errors.spanned(
                        &typed.pat,
                        "bind the `Context` to a plain name: `ctx: Context`",
                    );
                }
                continue;
            }
            if let Type::Reference(r) = ty {
                if is_context(&r.elem) {
                    errors.spanned(
                        ty,
                        "take the `Context` by value: write `Context` instead of `&Context` \
                         (it is cheap to clone)",
                    );
                    continue;
                }
            }
            check_arg_type(ty, errors);
            match &*typed.pat {
                Pat::Ident(PatIdent {
                    by_ref: None,
                    subpat: None,
                    ident,
                    mutability,
                    ..
                }) => args.push(Arg {
                    ident: ident.clone(),
                    mutability: *mutability,
                    ty: ty.clone(),
                    attrs: typed.attrs.clone(),
                }),
                pat => errors.spanned(
                    pat,
                    "a `#[supervised]` fn takes plain `name: Type` arguments, which are \
                     cloned for each attempt: give this argument a name and destructure it \
                     in the body, e.g. `pair: (A, B)` then `let (a, b) = pair;`",
                ),
            }
        }

        let output = match &sig.output {
            ReturnType::Default => syn::parse_quote!(()),
            ReturnType::Type(_, ty) => {
                check_output(ty, errors);
                (**ty).clone()
            }
        };
        Plan { args, ctx, output }
    }
}

/// `Context`, `supervised::Context`, `::supervised::Context`, ...
fn is_context(ty: &Type) -> bool {
    match ty {
        Type::Path(p) if p.qself.is_none() => p
            .path
            .segments
            .last()
            .is_some_and(|s| s.ident == "Context" && s.arguments.is_none()),
        Type::Group(g) => is_context(&g.elem),
        Type::Paren(p) => is_context(&p.elem),
        _ => false,
    }
}

fn ctx_pattern_ok(pat: &Pat) -> bool {
    match pat {
        Pat::Ident(p) => p.by_ref.is_none() && p.subpat.is_none(),
        Pat::Wild(_) => true,
        _ => false,
    }
}

/// Rejects what cannot be cloned into a `'static` attempt, with a message for
/// each: `impl Trait` and borrowed types.
fn check_arg_type(ty: &Type, errors: &mut Errors) {
    struct Finder<'e> {
        errors: &'e mut Errors,
    }
    impl<'ast> Visit<'ast> for Finder<'_> {
        fn visit_type_impl_trait(&mut self, t: &'ast syn::TypeImplTrait) {
            self.errors.spanned(
                t,
                "`impl Trait` arguments are not supported by `#[supervised]`: use a \
                 concrete type, or `Box<dyn Trait + Send>` / `Arc<dyn Trait + Send + Sync>`",
            );
        }
        fn visit_type_reference(&mut self, r: &'ast syn::TypeReference) {
            let is_static = r.lifetime.as_ref().is_some_and(|l| l.ident == "static");
            if !is_static {
                self.errors.spanned(
                    r,
                    "arguments of a `#[supervised]` fn are kept for restarts and cloned \
                     for each attempt, so they cannot borrow: take an owned type instead \
                     (e.g. `String` for `&str`, `Arc<T>` for `&T`)",
                );
                return;
            }
            syn::visit::visit_type_reference(self, r);
        }
        fn visit_lifetime(&mut self, l: &'ast syn::Lifetime) {
            if l.ident != "static" && l.ident != "_" {
                self.errors.spanned(
                    l,
                    "arguments of a `#[supervised]` fn must be `'static`: use owned \
                     types instead of borrowed ones",
                );
            }
        }
        // Closure-like and fn-pointer types may name their own lifetimes.
        fn visit_type_bare_fn(&mut self, _: &'ast syn::TypeBareFn) {}
        fn visit_type_trait_object(&mut self, t: &'ast syn::TypeTraitObject) {
            for bound in &t.bounds {
                if let syn::TypeParamBound::Lifetime(l) = bound {
                    self.visit_lifetime(l);
                }
            }
        }
    }
    Finder { errors }.visit_type(ty);
}

/// Accepts `()` and `Result<(), E>` (any path ending in `Result`, so
/// `io::Result<()>` and `anyhow::Result<()>` too).
fn check_output(ty: &Type, errors: &mut Errors) {
    const WANTED: &str = "a `#[supervised]` fn returns nothing, `()`, or `Result<(), E>` \
                          with `E: Display` (the runtime restarts on `Err` and has no use for \
                          another value)";
    match ty {
        Type::Tuple(t) if t.elems.is_empty() => {}
        Type::Group(g) => check_output(&g.elem, errors),
        Type::Paren(p) => check_output(&p.elem, errors),
        Type::Path(p) if p.qself.is_none() => {
            let last = p.path.segments.last().expect("a path has a segment");
            if last.ident != "Result" {
                errors.spanned(ty, format_args!("{WANTED}: write `Result<(), E>` here"));
                return;
            }
            let ok = match &last.arguments {
                PathArguments::AngleBracketed(a) => a.args.first(),
                _ => None,
            };
            match ok {
                Some(GenericArgument::Type(Type::Tuple(t))) if t.elems.is_empty() => {}
                Some(other) => errors.spanned(
                    other,
                    format_args!(
                        "{WANTED}: the `Ok` value would be thrown away; write `()` here \
                         and send or store the value from the body"
                    ),
                ),
                None => errors.spanned(ty, format_args!("{WANTED}: write `Result<(), E>`")),
            }
        }
        Type::Never(_) => errors.spanned(
            ty,
            format_args!(
                "{WANTED}: remove `-> !`; a body that never returns (an endless `loop`) \
                 is fine with no return type"
            ),
        ),
        _ => errors.spanned(ty, format_args!("{WANTED}: write `Result<(), E>` here")),
    }
}

fn duration(pm: &TokenStream, d: Dur) -> TokenStream {
    let secs = Literal::u64_unsuffixed(d.secs);
    let nanos = Literal::u32_unsuffixed(d.nanos);
    quote!(#pm::Duration::new(#secs, #nanos))
}

fn spec_calls(args: &Args, pm: &TokenStream) -> TokenStream {
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
    calls
}

/// A trait local to the generated fn through which argument `index` is
/// cloned for each attempt. Its `Clone + Send + 'static` bound is the one
/// check of the argument's type, and its message names the argument.
fn arg_trait(index: usize, arg: &Arg, fn_name: &Ident) -> (Ident, TokenStream) {
    let name = arg.ident.unraw();
    let message = format!(
        "argument `{name}` of `#[supervised] fn {}` must be `Clone + Send + 'static`, \
         but `{{Self}}` is not",
        fn_name.unraw()
    );
    let label = format!("each attempt gets its own clone of `{name}`");
    let note = format!(
        "derive or implement `Clone` for it, or share it: `{name}: Arc<...>` \
         (with a `Mutex` inside for shared mutable state)"
    );
    let tr = format_ident!("__SupervisedArg{}", index);
    let def = quote! {
        #[diagnostic::on_unimplemented(message = #message, label = #label, note = #note)]
        trait #tr: ::core::marker::Sized {
            fn __supervised_clone(&self) -> Self;
        }
        impl<T: ::core::clone::Clone + ::core::marker::Send + 'static> #tr for T {
            #[inline(always)]
            fn __supervised_clone(&self) -> Self {
                ::core::clone::Clone::clone(self)
            }
        }
    };
    (tr, def)
}

fn generate(func: ItemFn, args: &Args, plan: Plan) -> TokenStream {
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = func;
    let mut block = *block;
    let krate = args.krate();
    let pm = quote!(#krate::__private);
    let fn_name = sig.ident.clone();
    let task_name = match &args.name {
        Some(g) => syn::LitStr::new(&g.value, g.span),
        None => syn::LitStr::new(&fn_name.unraw().to_string(), fn_name.span()),
    };

    // The attempt's own handle, invisible to the user's code.
    let ctx = Ident::new("__supervised_ctx", Span::mixed_site());
    let beats = if args.auto_heartbeat() {
        heartbeat::inject(&mut block, &quote!(#pm::Context::heartbeat(&#ctx)))
    } else {
        0
    };

    // Inner attributes of the body (`#![allow(...)]`) apply to the whole fn.
    let attrs: Vec<syn::Attribute> = attrs
        .into_iter()
        .map(|mut a| {
            a.style = AttrStyle::Outer;
            a
        })
        .collect();
    let must_use = (!attrs.iter().any(|a| a.path().is_ident("must_use")))
        .then(|| quote!(#[must_use = "a `Task` does nothing until it is run or spawned"]));

    let params = plan.args.iter().map(|a| {
        let Arg {
            ident, ty, attrs, ..
        } = a;
        quote!(#(#attrs)* #ident: #ty)
    });
    let (traits, trait_defs): (Vec<Ident>, Vec<TokenStream>) = plan
        .args
        .iter()
        .enumerate()
        .map(|(i, a)| arg_trait(i, a, &fn_name))
        .unzip();
    let clones = plan.args.iter().zip(&traits).map(|(a, tr)| {
        let Arg {
            ident,
            mutability,
            ty,
            ..
        } = a;
        let clone = quote_spanned!(ty.span()=> #tr::__supervised_clone(&#ident));
        quote!(let #mutability #ident = #clone;)
    });
    let user_ctx = plan.ctx.as_ref().map(|(pat, ty)| {
        if beats > 0 {
            quote!(let #pat: #ty = ::core::clone::Clone::clone(&#ctx);)
        } else {
            quote!(let #pat: #ty = #ctx;)
        }
    });
    let ctx_param = if plan.ctx.is_some() || beats > 0 {
        quote!(#ctx)
    } else {
        quote!(_)
    };
    let mut spec = spec_calls(args, &pm);
    let ctx_usable = plan
        .ctx
        .as_ref()
        .is_some_and(|(pat, _)| !matches!(pat, Pat::Wild(_)));
    if beats == 0 && !ctx_usable {
        // Nothing in the fn can beat: readiness must not wait for a beat.
        spec.extend(quote!(.without_heartbeat()));
    }
    let output = &plan.output;
    let output_check = quote_spanned!(output.span()=> #pm::attempt::<#output, _>);
    let closure = quote! {
        move |#ctx_param: #pm::Context| {
            #(#clones)*
            #user_ctx
            #output_check(async move #block)
        }
    };
    let task = quote!(#pm::Task::new(#pm::Spec::new(#task_name) #spec, #closure));
    quote! {
        #must_use
        #(#attrs)*
        #vis fn #fn_name(#(#params),*) -> #pm::Task {
            #(#trait_defs)*
            #task
        }
    }
}
