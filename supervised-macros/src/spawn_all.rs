//! `spawn_all!`: starts several tasks in one `Group`.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, Token};

use crate::errors::Errors;

/// The input the facade's `spawn_all!` hands over: `[path of the crate]`, an
/// optional `token = expr;`, then the tasks.
struct Input {
    krate: TokenStream,
    token: Option<Expr>,
    tasks: Punctuated<Expr, Token![,]>,
}

impl Parse for Input {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let content;
        syn::bracketed!(content in input);
        let krate: TokenStream = content.parse()?;
        let token = if input.peek(syn::Ident) && input.peek2(Token![=]) && !input.peek2(Token![==])
        {
            let key: syn::Ident = input.parse()?;
            if key != "token" {
                return Err(syn::Error::new(
                    key.span(),
                    format_args!(
                        "unknown option `{key}`: `spawn_all!` takes `token = <CancellationToken>;` \
                         before the tasks"
                    ),
                ));
            }
            let eq = input.parse::<Token![=]>()?;
            if input.is_empty() || input.peek(Token![;]) || input.peek(Token![,]) {
                return Err(syn::Error::new(
                    eq.span,
                    "`token` needs a value: write `token = shutdown.clone();` with the \
                     `CancellationToken` the tasks stop on",
                ));
            }
            let token: Expr = input.parse()?;
            if input.peek(Token![,]) {
                return Err(syn::Error::new(
                    input.span(),
                    "end the token with `;` before the tasks: `spawn_all!(token = t; a(), b())`",
                ));
            }
            if !input.is_empty() {
                input.parse::<Token![;]>()?;
            }
            Some(token)
        } else {
            None
        };
        let mut tasks = Punctuated::new();
        while !input.is_empty() {
            let task: Expr = input.parse()?;
            if let Some(key) = option_after_tasks(&task) {
                return Err(syn::Error::new_spanned(
                    &task,
                    format_args!(
                        "`{key} = ...` goes before the tasks, ended by `;`: \
                         `spawn_all!({key} = {}; a(), b())`",
                        match &task {
                            Expr::Assign(a) => a.right.to_token_stream().to_string(),
                            _ => unreachable!(),
                        }
                    ),
                ));
            }
            tasks.push_value(task);
            if input.is_empty() {
                break;
            }
            if input.peek(Token![;]) {
                let semi: Token![;] = input.parse()?;
                return Err(syn::Error::new(
                    semi.span,
                    "separate the tasks with `,`: `spawn_all!(a(), b())` (a `;` only ends \
                     the `token = ...;` option before the tasks)",
                ));
            }
            tasks.push_punct(input.parse::<Token![,]>()?);
        }
        Ok(Input {
            krate,
            token,
            tasks,
        })
    }
}

/// `token = t` written among the tasks: the option's key.
fn option_after_tasks(task: &Expr) -> Option<String> {
    let Expr::Assign(assign) = task else {
        return None;
    };
    match &*assign.left {
        Expr::Path(p) if p.path.is_ident("token") => Some("token".to_owned()),
        _ => None,
    }
}

/// What the duplicate check compares: the expression's tokens, with the bare
/// name `a` standing for the call `a()`.
fn duplicate_key(task: &Expr) -> String {
    let text = |t: &dyn ToTokens| t.to_token_stream().to_string().replace(' ', "");
    match task {
        Expr::Path(p) if p.qself.is_none() => format!("{}()", text(&p.path)),
        Expr::Group(g) => duplicate_key(&g.expr),
        other => text(other),
    }
}

pub(crate) fn expand(input: TokenStream) -> TokenStream {
    let Input {
        krate,
        token,
        tasks,
    } = match syn::parse2(input) {
        Ok(input) => input,
        Err(e) => return e.to_compile_error(),
    };
    let pm = quote!(#krate::__private);

    // A `#[supervised]` fn's name comes from its attribute, so the same call
    // written twice makes two tasks with one name.
    let mut errors = Errors::default();
    let mut seen: Vec<String> = Vec::new();
    for task in &tasks {
        let key = duplicate_key(task);
        if seen.contains(&key) {
            errors.spanned(
                task,
                format_args!(
                    "`{task}` is spawned twice in this `spawn_all!`: both tasks would have \
                     the same name, and the tasks of a group need different names; remove \
                     one, or rename the second: `{task}.named(\"...\")`",
                    task = duplicate_key(task)
                ),
            );
        } else {
            seen.push(key);
        }
    }
    if let Err(e) = errors.finish() {
        return e.to_compile_error();
    }

    let group = syn::Ident::new("__supervised_group", Span::mixed_site());
    let new_group = match &token {
        Some(token) => {
            let token = quote_spanned!(token.span()=> #pm::IntoToken::into_token(#token));
            quote!(#pm::Group::with_token(#token))
        }
        None => quote!(#pm::Group::new()),
    };
    let spawns = tasks.iter().map(|task| {
        let text = task.to_token_stream().to_string();
        // A bare name is a `Task` value or a fn without arguments; anything
        // else must be a `Task`. Each has its own message.
        let task = match task {
            Expr::Path(_) => quote_spanned! {task.span()=> {
                #[allow(unused_imports)]
                use #pm::{ByNameFn as _, ByNameOther as _};
                #pm::ByName(#task).into_task()
            }},
            _ => quote_spanned!(task.span()=> #pm::IntoTask::into_task(#task)),
        };
        quote!(#pm::spawn_member(&mut #group, #task, #text);)
    });
    quote! {
        {
            #[allow(unused_mut)]
            let mut #group = #new_group;
            #(#spawns)*
            #group
        }
    }
}
