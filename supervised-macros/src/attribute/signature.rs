//! The checks of the fn's signature, and what the expansion needs from it.

use syn::visit::Visit;
use syn::{Attribute, FnArg, GenericParam, Ident, Pat, PatIdent, ReturnType, Signature, Type};

use crate::errors::Errors;

/// What the signature holds, once checked.
pub(super) struct Plan {
    /// The `self` parameter of a method, kept in the signature and cloned for
    /// each attempt.
    pub(super) receiver: Option<Receiver>,
    /// The arguments cloned for each attempt.
    pub(super) args: Vec<Arg>,
    /// The parameter that receives the runtime's `Context`, if any.
    pub(super) ctx: Option<CtxParam>,
    /// The declared return type; `()` when none is written.
    pub(super) output: Type,
    /// The parameters of the generated fn: every one but the `Context`, with
    /// `#[context]` markers removed.
    pub(super) params: Vec<FnArg>,
    /// The types of the parameters left out of `params`, named in the body
    /// of the signature emitted next to errors so that their imports stay
    /// used.
    pub(super) dropped: Vec<Type>,
}

/// `self`, `mut self` or `self: Arc<Self>`.
pub(super) struct Receiver {
    /// The `self` token, whose span the renamed `self` of the body carries.
    pub(super) token: syn::Token![self],
    pub(super) mutability: Option<syn::Token![mut]>,
    pub(super) ty: Type,
}

/// An argument cloned for each attempt.
pub(super) struct Arg {
    pub(super) ident: Ident,
    pub(super) mutability: Option<syn::Token![mut]>,
    pub(super) ty: Type,
    /// Its `#[cfg(..)]` attributes, repeated on its per-attempt clone.
    pub(super) cfgs: Vec<Attribute>,
}

/// The parameter given the runtime's `Context`.
pub(super) struct CtxParam {
    /// Its position among the fn's parameters.
    pub(super) index: usize,
    pub(super) pat: Pat,
    pub(super) ty: Type,
    /// Its `#[cfg(..)]` attributes.
    pub(super) cfgs: Vec<Attribute>,
}

impl CtxParam {
    /// `false` for `_: Context`, which the body cannot use.
    pub(super) fn usable(&self) -> bool {
        !matches!(self.pat, Pat::Wild(_))
    }
}

impl Plan {
    pub(super) fn of(sig: &Signature, errors: &mut Errors) -> Plan {
        check_qualifiers(sig, errors);
        for param in &sig.generics.params {
            if let GenericParam::Lifetime(l) = param {
                errors.spanned(
                    &l.lifetime,
                    "a `#[supervised]` fn cannot have lifetime parameters: its arguments are \
                     kept for restarts and must be `'static`; remove the lifetime and take \
                     owned types",
                );
            }
        }

        let marked = sig.inputs.iter().any(|input| match input {
            FnArg::Typed(t) => t.attrs.iter().any(is_context_marker),
            FnArg::Receiver(_) => false,
        });
        let mut plan = Plan {
            receiver: None,
            args: Vec::new(),
            ctx: None,
            output: match &sig.output {
                ReturnType::Default => syn::parse_quote!(()),
                ReturnType::Type(_, ty) => (**ty).clone(),
            },
            params: Vec::new(),
            dropped: Vec::new(),
        };
        if let Type::Never(never) = &plan.output {
            errors.spanned(
                never,
                "a `#[supervised]` fn cannot return `!`: write `-> Infallible` \
                 (`std::convert::Infallible`), or no return type, for a body that never \
                 returns",
            );
        }
        for (index, input) in sig.inputs.iter().enumerate() {
            match input {
                FnArg::Receiver(r) => plan.receiver(r, errors),
                FnArg::Typed(typed) => plan.typed(index, typed, marked, errors),
            }
        }
        plan
    }

    fn receiver(&mut self, r: &syn::Receiver, errors: &mut Errors) {
        let mut kept = r.clone();
        if kept.reference.is_none() {
            // The generated fn only moves it; each attempt's clone is `mut`.
            kept.mutability = None;
        }
        self.params.push(FnArg::Receiver(kept));
        let by_ref = r.reference.is_some() || matches!(&*r.ty, Type::Reference(_));
        if by_ref {
            errors.spanned(
                r,
                "a `#[supervised]` method keeps its receiver for restarts, so it cannot \
                 borrow it: take `self: Arc<Self>` (each attempt gets a clone of the `Arc`)",
            );
            return;
        }
        check_arg_type(&r.ty, errors);
        self.receiver = Some(Receiver {
            token: r.self_token,
            mutability: r.mutability,
            ty: (*r.ty).clone(),
        });
    }

    fn typed(&mut self, index: usize, typed: &syn::PatType, marked: bool, errors: &mut Errors) {
        let ty = &*typed.ty;
        let is_marked = typed.attrs.iter().any(is_context_marker);
        let cfgs: Vec<Attribute> = typed
            .attrs
            .iter()
            .filter(|a| a.path().is_ident("cfg"))
            .cloned()
            .collect();
        if is_marked || (!marked && is_context(ty)) {
            self.dropped.push(ty.clone());
            if let Type::Reference(_) = ty {
                errors.spanned(
                    ty,
                    "take the `Context` by value: remove the `&` (a `Context` is cheap to \
                     clone)",
                );
            } else if self.ctx.is_some() {
                errors.spanned(
                    typed,
                    "a second `Context` parameter: a `#[supervised]` fn receives one \
                     `Context`; remove this parameter and clone the first one if needed",
                );
            } else if ctx_pattern_ok(&typed.pat) {
                self.ctx = Some(CtxParam {
                    index,
                    pat: (*typed.pat).clone(),
                    ty: ty.clone(),
                    cfgs,
                });
            } else {
                errors.spanned(
                    &typed.pat,
                    "bind the `Context` to a plain name: `ctx: Context`",
                );
            }
            return;
        }
        if let Type::Reference(r) = ty {
            if is_context(&r.elem) {
                self.dropped.push(ty.clone());
                errors.spanned(
                    ty,
                    "take the `Context` by value: write `Context` instead of `&Context` \
                     (it is cheap to clone)",
                );
                return;
            }
        }
        let mut param = typed.clone();
        param.attrs.retain(|a| !is_context_marker(a));
        if let Pat::Ident(p) = &mut *param.pat {
            // The generated fn only moves it; each attempt's clone is `mut`.
            p.mutability = None;
        }
        self.params.push(FnArg::Typed(param));
        check_arg_type(ty, errors);
        match &*typed.pat {
            Pat::Ident(PatIdent {
                by_ref: None,
                subpat: None,
                ident,
                mutability,
                ..
            }) => self.args.push(Arg {
                ident: ident.clone(),
                mutability: *mutability,
                ty: ty.clone(),
                cfgs,
            }),
            pat => errors.spanned(
                pat,
                "a `#[supervised]` fn takes plain `name: Type` arguments, which are cloned \
                 for each attempt: give this argument a name and destructure it in the \
                 body, e.g. `pair: (A, B)` then `let (a, b) = pair;`",
            ),
        }
    }
}

fn check_qualifiers(sig: &Signature, errors: &mut Errors) {
    if sig.asyncness.is_none() {
        errors.at(
            sig.fn_token.span,
            "`#[supervised]` needs an `async fn`: write `async fn` here (the fn becomes \
             one that returns a `supervised::Task`)",
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
            "a `#[supervised]` fn cannot be `unsafe`: remove `unsafe` and use an `unsafe` \
             block inside the body",
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
}

/// `#[context]`, the explicit marker of the `Context` parameter.
pub(super) fn is_context_marker(attr: &Attribute) -> bool {
    attr.path().is_ident("context")
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

/// Rejects borrowed types, which cannot be cloned into a `'static` attempt.
fn check_arg_type(ty: &Type, errors: &mut Errors) {
    struct Finder<'e> {
        errors: &'e mut Errors,
    }
    impl<'ast> Visit<'ast> for Finder<'_> {
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
                    "arguments of a `#[supervised]` fn must be `'static`: use owned types \
                     instead of borrowed ones",
                );
            }
        }
        // Closure-like and fn-pointer types may name their own lifetimes.
        fn visit_type_bare_fn(&mut self, _: &'ast syn::TypeBareFn) {}
        fn visit_parenthesized_generic_arguments(
            &mut self,
            _: &'ast syn::ParenthesizedGenericArguments,
        ) {
        }
        fn visit_type_trait_object(&mut self, t: &'ast syn::TypeTraitObject) {
            for bound in &t.bounds {
                if let syn::TypeParamBound::Lifetime(l) = bound {
                    self.visit_lifetime(l);
                }
            }
        }
        fn visit_type_impl_trait(&mut self, t: &'ast syn::TypeImplTrait) {
            for bound in &t.bounds {
                match bound {
                    syn::TypeParamBound::Lifetime(l) => self.visit_lifetime(l),
                    // `impl for<'a> Fn(&'a str)`: the trait's own lifetimes.
                    syn::TypeParamBound::Trait(t) if t.lifetimes.is_some() => {}
                    other => syn::visit::visit_type_param_bound(self, other),
                }
            }
        }
    }
    Finder { errors }.visit_type(ty);
}
