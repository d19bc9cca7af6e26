//! `spawn_all!`: starts several tasks in one `Group`.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, Token};

use crate::duration::Dur;
use crate::errors::Errors;

/// The input the facade's `spawn_all!` hands over: `[path of the crate]`,
/// the group's options, each list ended by `;`, then the tasks.
struct Input {
    krate: TokenStream,
    options: Options,
    tasks: Punctuated<Expr, Token![,]>,
}

/// The group options written before the tasks.
#[derive(Default)]
struct Options {
    token: Option<Expr>,
    lease: Option<Expr>,
    strategy: Option<(syn::Ident, &'static str)>,
    ordered: Option<syn::Ident>,
    max_restarts: Option<(syn::Ident, u32)>,
    within: Option<(syn::Ident, Dur)>,
    start_timeout: Option<(syn::Ident, Dur)>,
}

const OPTIONS: &str = "`token = <CancellationToken>`, `lease = <lease store>`, `strategy = one_for_one | one_for_all | \
                       rest_for_one`, `ordered`, `max_restarts = <count>, within = \"<duration>\"`, \
                       `start_timeout = \"<duration>\"`";

/// Is the input at an option: `key = value` (not `==`), or the flag
/// `ordered` followed by `;` or `,`?
fn at_option(input: ParseStream<'_>) -> bool {
    if input.peek(syn::Ident) && input.peek2(Token![=]) && !input.peek2(Token![==]) {
        return true;
    }
    let fork = input.fork();
    matches!(fork.parse::<syn::Ident>(), Ok(key) if key == "ordered")
        && (fork.peek(Token![;]) || fork.peek(Token![,]))
}

impl Options {
    fn parse_one(&mut self, input: ParseStream<'_>) -> syn::Result<()> {
        let key: syn::Ident = input.parse()?;
        let name = key.to_string();
        let repeated = match name.as_str() {
            "token" => self.token.is_some(),
            "lease" => self.lease.is_some(),
            "strategy" => self.strategy.is_some(),
            "ordered" => self.ordered.is_some(),
            "max_restarts" => self.max_restarts.is_some(),
            "within" => self.within.is_some(),
            "start_timeout" => self.start_timeout.is_some(),
            _ => {
                return Err(syn::Error::new(
                    key.span(),
                    format_args!(
                        "unknown option `{key}`: `spawn_all!` takes {OPTIONS}, ended by `;` \
                         before the tasks"
                    ),
                ))
            }
        };
        if repeated {
            return Err(syn::Error::new(
                key.span(),
                format_args!("`{key}` is given twice; keep one"),
            ));
        }
        if name == "ordered" {
            if input.peek(Token![=]) {
                return Err(syn::Error::new(
                    key.span(),
                    "`ordered` takes no value: write `ordered;` before the tasks",
                ));
            }
            self.ordered = Some(key);
            return Ok(());
        }
        let eq = input.parse::<Token![=]>()?;
        if input.is_empty() || input.peek(Token![;]) || input.peek(Token![,]) {
            return Err(syn::Error::new(
                eq.span,
                format_args!("`{key}` needs a value: write e.g. {}", example(&name)),
            ));
        }
        match name.as_str() {
            "token" => self.token = Some(input.parse()?),
            "lease" => self.lease = Some(input.parse()?),
            "strategy" => {
                let path: syn::Path = input.parse()?;
                let last = path.segments.last().map(|s| s.ident.to_string());
                let variant = match last.as_deref() {
                    Some("one_for_one" | "OneForOne") => "OneForOne",
                    Some("one_for_all" | "OneForAll") => "OneForAll",
                    Some("rest_for_one" | "RestForOne") => "RestForOne",
                    _ => {
                        return Err(syn::Error::new_spanned(
                            &path,
                            "unknown strategy: write `one_for_one`, `one_for_all` or \
                             `rest_for_one`",
                        ))
                    }
                };
                self.strategy = Some((key, variant));
            }
            "max_restarts" => {
                let lit: syn::LitInt = input.parse().map_err(|e| {
                    syn::Error::new(e.span(), "`max_restarts` takes a count: `max_restarts = 5`")
                })?;
                let n = lit.base10_parse::<u32>().map_err(|_| {
                    syn::Error::new(
                        lit.span(),
                        "`max_restarts` takes a whole count that fits a `u32`: `max_restarts = 5`",
                    )
                })?;
                self.max_restarts = Some((key, n));
            }
            _ => {
                let lit: syn::LitStr = input.parse().map_err(|e| {
                    syn::Error::new(
                        e.span(),
                        format_args!("`{key}` takes a duration string: {}", example(&name)),
                    )
                })?;
                let dur = crate::duration::parse(&lit.value())
                    .map_err(|e| syn::Error::new(lit.span(), e))?;
                if name == "within" {
                    self.within = Some((key, dur));
                } else {
                    self.start_timeout = Some((key, dur));
                }
            }
        }
        Ok(())
    }

    fn check(&self) -> syn::Result<()> {
        match (&self.max_restarts, &self.within) {
            (Some((key, n)), None) => Err(syn::Error::new(
                key.span(),
                format_args!(
                    "`max_restarts` needs the window it counts restarts in: `max_restarts = \
                     {n}, within = \"1m\";`"
                ),
            )),
            (None, Some((key, _))) => Err(syn::Error::new(
                key.span(),
                "`within` is the window of `max_restarts`: `max_restarts = 5, within = \"1m\";`",
            )),
            (Some(_), Some((key, within))) if within.is_zero() => Err(syn::Error::new(
                key.span(),
                "`within` must be longer than zero",
            )),
            _ => Ok(()),
        }
    }
}

fn example(key: &str) -> &'static str {
    match key {
        "token" => "`token = shutdown.clone();` with the `CancellationToken` the tasks stop on",
        "lease" => "`lease = leases.clone();` with the lease store of the group's singletons",
        "strategy" => "`strategy = one_for_all;`",
        "max_restarts" => "`max_restarts = 5, within = \"1m\";`",
        "within" => "`within = \"1m\"`",
        _ => "`start_timeout = \"30s\"`",
    }
}

impl Parse for Input {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let content;
        syn::bracketed!(content in input);
        let krate: TokenStream = content.parse()?;
        let mut options = Options::default();
        while at_option(input) {
            options.parse_one(input)?;
            if input.peek(Token![,]) {
                let comma = input.parse::<Token![,]>()?;
                if !at_option(input) {
                    return Err(syn::Error::new(
                        comma.span,
                        "end the options with `;` before the tasks: \
                         `spawn_all!(ordered, strategy = one_for_all; a(), b())`",
                    ));
                }
            } else if !input.is_empty() {
                input.parse::<Token![;]>()?;
            }
        }
        options.check()?;
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
                     the options before the tasks)",
                ));
            }
            tasks.push_punct(input.parse::<Token![,]>()?);
        }
        Ok(Input {
            krate,
            options,
            tasks,
        })
    }
}

/// An option written among the tasks (`token = t`): the option's key.
fn option_after_tasks(task: &Expr) -> Option<String> {
    let Expr::Assign(assign) = task else {
        return None;
    };
    match &*assign.left {
        Expr::Path(p) => [
            "token",
            "lease",
            "strategy",
            "max_restarts",
            "within",
            "start_timeout",
        ]
        .into_iter()
        .find(|key| p.path.is_ident(key))
        .map(str::to_owned),
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
        options,
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
    let mut new_group = match &options.token {
        Some(token) => {
            let token = quote_spanned!(token.span()=> #pm::IntoToken::into_token(#token));
            quote!(#pm::Group::with_token(#token))
        }
        None => quote!(#pm::Group::new()),
    };
    let duration = |d: Dur| {
        let (secs, nanos) = (d.secs, d.nanos);
        quote!(#pm::Duration::new(#secs, #nanos))
    };
    if let Some(lease) = &options.lease {
        let lease = quote_spanned!(lease.span()=> #pm::lease_of(#lease));
        new_group = quote!(#new_group.with_lease(#lease));
    }
    if let Some((_, variant)) = &options.strategy {
        let variant = syn::Ident::new(variant, Span::call_site());
        new_group = quote!(#new_group.with_strategy(#pm::Strategy::#variant));
    }
    if options.ordered.is_some() {
        new_group = quote!(#new_group.ordered());
    }
    if let Some((_, timeout)) = options.start_timeout {
        let timeout = duration(timeout);
        new_group = quote!(#new_group.with_start_timeout(#timeout));
    }
    if let (Some((_, n)), Some((_, within))) = (&options.max_restarts, options.within) {
        let within = duration(within);
        new_group = quote!(#new_group.with_max_restarts(#n, #within));
    }
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
