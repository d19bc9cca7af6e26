//! The arguments of `#[supervised(...)]`: one branch per key, every value
//! checked here so that mistakes are reported on the token that is wrong.

use proc_macro2::{Span, TokenStream};
use quote::{quote, ToTokens};
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::spanned::Spanned;
use syn::{Expr, Lit, Path};

use crate::duration::Dur;
use crate::errors::Errors;

mod hints;
mod values;

use hints::{example, unknown_key_message};
use values::{boolean, dur, int, string, ungroup, word};

/// Every key, in the order the docs list them.
pub(crate) const KEYS: [&str; 17] = [
    "name",
    "backoff_initial",
    "backoff_max",
    "jitter",
    "reset_after",
    "restart",
    "max_restarts",
    "within",
    "stale_after",
    "on_stale",
    "grace",
    "blocking_after",
    "quarantine_initial",
    "quarantine_max",
    "heartbeat",
    "singleton",
    "crate",
];

/// A value together with the span of the key and of the value.
pub(crate) struct Given<T> {
    pub(crate) value: T,
    pub(crate) key: Span,
    pub(crate) span: Span,
}

/// The parsed arguments. `None` means "not written": the core's default.
#[derive(Default)]
pub(crate) struct Args {
    pub(crate) name: Option<Given<String>>,
    pub(crate) backoff_initial: Option<Given<Dur>>,
    pub(crate) backoff_max: Option<Given<Dur>>,
    /// The `Jitter` variant.
    pub(crate) jitter: Option<Given<&'static str>>,
    pub(crate) reset_after: Option<Given<Dur>>,
    /// The `RestartPolicy` variant.
    pub(crate) restart: Option<Given<&'static str>>,
    pub(crate) max_restarts: Option<Given<u32>>,
    pub(crate) within: Option<Given<Dur>>,
    pub(crate) stale_after: Option<Given<Dur>>,
    /// The `OnStale` variant.
    pub(crate) on_stale: Option<Given<&'static str>>,
    pub(crate) grace: Option<Given<Dur>>,
    pub(crate) blocking_after: Option<Given<Dur>>,
    pub(crate) quarantine_initial: Option<Given<Dur>>,
    pub(crate) quarantine_max: Option<Given<Dur>>,
    /// `true` for `heartbeat = "auto"` (the default), `false` for `"manual"`.
    pub(crate) heartbeat: Option<Given<bool>>,
    /// `singleton = true`: the task takes its group's lease.
    pub(crate) singleton: Option<Given<bool>>,
    pub(crate) krate: Option<Given<Path>>,
    /// Every key written, valid value or not.
    present: Vec<&'static str>,
}

impl Args {
    /// Parses the attribute's arguments, recording every problem in `errors`
    /// and keeping whatever was valid.
    pub(crate) fn parse(tokens: TokenStream, errors: &mut Errors) -> Args {
        let mut args = Args::default();
        if let Some(literal) = stray_literal(&tokens) {
            let hint = if literal.to_string().starts_with('"') {
                format!("write `name = {literal}` to name the task")
            } else {
                "this value has no key; write e.g. `max_restarts = 5`".to_owned()
            };
            errors.at(
                literal.span(),
                format_args!("the arguments are `key = value` pairs: {hint}"),
            );
            return args;
        }
        let parser = syn::meta::parser(|meta| {
            args.one(&meta, errors)?;
            Ok(())
        });
        if let Err(e) = parser.parse2(tokens) {
            errors.push(e);
        }
        args.check_combinations(errors);
        args
    }

    /// The path of the `supervised` crate in the expansion.
    pub(crate) fn krate(&self) -> TokenStream {
        match &self.krate {
            Some(given) => given.value.to_token_stream(),
            None => quote!(::supervised),
        }
    }

    /// The `stale_after` key, when the task is judged on its heartbeats.
    pub(crate) fn stale_after_key(&self) -> Option<Span> {
        self.stale_after.as_ref().map(|g| g.key)
    }

    pub(crate) fn auto_heartbeat(&self) -> bool {
        self.heartbeat.as_ref().is_none_or(|h| h.value)
    }

    fn one(&mut self, meta: &ParseNestedMeta<'_>, errors: &mut Errors) -> syn::Result<()> {
        let key_span = meta.path.span();
        let key = match meta.path.get_ident() {
            Some(ident) => ident.to_string(),
            None => meta.path.to_token_stream().to_string().replace(' ', ""),
        };
        let Some(known) = KEYS.iter().copied().find(|k| *k == key) else {
            errors.at(key_span, unknown_key_message(&key));
            skip_value(meta)?;
            return Ok(());
        };
        if !meta.input.peek(syn::Token![=]) {
            errors.at(
                key_span,
                format_args!(
                    "`{known}` needs a value: write `{known} = {}`",
                    example(known)
                ),
            );
            skip_value(meta)?;
            return Ok(());
        }
        let input = meta.value()?;
        // A lone literal, the common case, skips the expression parser.
        let fork = input.fork();
        // (Not after `-`, which `Lit` would take into the literal.)
        let lone = (!input.peek(syn::Token![-])).then(|| fork.parse::<Lit>());
        let expr: Expr = match lone {
            Some(Ok(lit)) if fork.is_empty() || fork.peek(syn::Token![,]) => {
                input.parse::<Lit>()?;
                Expr::Lit(syn::ExprLit {
                    attrs: Vec::new(),
                    lit,
                })
            }
            _ => input.parse()?,
        };
        let value = ungroup(&expr);
        if self.present.contains(&known) {
            errors.at(
                key_span,
                format_args!("`{known}` is given twice; keep only one `{known} = ...`"),
            );
            return Ok(());
        }
        self.present.push(known);
        let span = value.span();
        let at = (key_span, span);
        match known {
            "name" => {
                if let Some(s) = string(value, known, errors) {
                    if s.value().trim().is_empty() {
                        errors.at(
                            span,
                            "the task name cannot be empty; write e.g. `name = \"scheduler\"`",
                        );
                    } else {
                        self.name = Some(given(s.value(), at));
                    }
                }
            }
            "backoff_initial" => {
                self.backoff_initial = dur(value, known, errors).map(|v| given(v, at))
            }
            "backoff_max" => self.backoff_max = dur(value, known, errors).map(|v| given(v, at)),
            "reset_after" => self.reset_after = dur(value, known, errors).map(|v| given(v, at)),
            "within" => self.within = dur(value, known, errors).map(|v| given(v, at)),
            "stale_after" => self.stale_after = dur(value, known, errors).map(|v| given(v, at)),
            "grace" => self.grace = dur(value, known, errors).map(|v| given(v, at)),
            "blocking_after" => {
                self.blocking_after = dur(value, known, errors).map(|v| given(v, at))
            }
            "quarantine_initial" => {
                self.quarantine_initial = dur(value, known, errors).map(|v| given(v, at))
            }
            "quarantine_max" => {
                self.quarantine_max = dur(value, known, errors).map(|v| given(v, at))
            }
            "jitter" => {
                self.jitter = word(
                    value,
                    known,
                    &[("none", "None"), ("full", "Full"), ("equal", "Equal")],
                    errors,
                )
                .map(|v| given(v, at))
            }
            "restart" => {
                self.restart = word(
                    value,
                    known,
                    &[
                        ("on_failure", "OnFailure"),
                        ("always", "Always"),
                        ("never", "Never"),
                    ],
                    errors,
                )
                .map(|v| given(v, at))
            }
            "on_stale" => {
                self.on_stale = word(
                    value,
                    known,
                    &[("report", "Report"), ("restart", "Restart")],
                    errors,
                )
                .map(|v| given(v, at))
            }
            "heartbeat" => {
                self.heartbeat = word(
                    value,
                    known,
                    &[("auto", "auto"), ("manual", "manual")],
                    errors,
                )
                .map(|w| given(w == "auto", at))
            }
            "max_restarts" => self.max_restarts = int(value, known, errors).map(|v| given(v, at)),
            "singleton" => self.singleton = boolean(value, known, errors).map(|v| given(v, at)),
            "crate" => {
                if let Some(s) = string(value, known, errors) {
                    match s.parse::<Path>() {
                        _ if s.value().trim().is_empty() => errors.at(
                            span,
                            "`crate` cannot be empty; write the name the `supervised` crate \
                             has in your Cargo.toml, e.g. `crate = \"my_supervised\"`",
                        ),
                        Ok(path) => self.krate = Some(given(path, at)),
                        Err(_) => errors.at(
                            span,
                            format_args!(
                                "`{}` is not a path; write the name the `supervised` crate \
                                 has in your Cargo.toml, e.g. `crate = \"my_supervised\"`",
                                s.value()
                            ),
                        ),
                    }
                }
            }
            _ => unreachable!("every key of KEYS has a branch"),
        }
        Ok(())
    }

    fn check_combinations(&self, errors: &mut Errors) {
        if let (Some(initial), Some(max)) = (&self.backoff_initial, &self.backoff_max) {
            if initial.value > max.value {
                errors.at(
                    initial.span,
                    format_args!(
                        "`backoff_initial` ({}) is greater than `backoff_max` ({}); the first \
                         delay must not exceed the largest: lower `backoff_initial` or raise \
                         `backoff_max`",
                        initial.value, max.value
                    ),
                );
            }
        }
        // The default largest quarantine (`DEFAULT_QUARANTINE_MAX`): 5 minutes.
        let default_max = Dur {
            secs: 300,
            nanos: 0,
        };
        match (&self.quarantine_initial, &self.quarantine_max) {
            (Some(initial), Some(max)) if initial.value > max.value => errors.at(
                initial.span,
                format_args!(
                    "`quarantine_initial` ({}) is greater than `quarantine_max` ({}); lower \
                     `quarantine_initial` or raise `quarantine_max`",
                    initial.value, max.value
                ),
            ),
            (Some(initial), None) if initial.value > default_max => errors.at(
                initial.span,
                format_args!(
                    "`quarantine_initial` ({}) is greater than the default `quarantine_max` \
                     (5m); add `quarantine_max = \"{}\"` or more",
                    initial.value, initial.value
                ),
            ),
            _ => {}
        }
        // A key written with a bad value was reported already.
        let written = |key| self.present.contains(&key);
        match (&self.max_restarts, &self.within) {
            (Some(max), None) if !written("within") => errors.at(
                max.key,
                format_args!(
                    "`max_restarts` needs the window it counts restarts in: add \
                     `within = \"1m\"` (more than {} restarts within that window give up)",
                    max.value
                ),
            ),
            (None, Some(within)) if !written("max_restarts") => errors.at(
                within.key,
                "`within` is the window of `max_restarts`: add `max_restarts = 5` \
                 (or remove `within`)",
            ),
            _ => {}
        }
        if let (Some(on_stale), false) = (&self.on_stale, written("stale_after")) {
            errors.at(
                on_stale.key,
                "`on_stale` has no effect without `stale_after`: add `stale_after = \"30s\"` \
                 (how long without a heartbeat makes the task stale)",
            );
        }
    }
}

/// A literal where a key is expected (`#[supervised("scheduler")]`): at the
/// start or right after a comma.
fn stray_literal(tokens: &TokenStream) -> Option<proc_macro2::Literal> {
    let mut at_key = true;
    for token in tokens.clone() {
        match token {
            proc_macro2::TokenTree::Literal(l) if at_key => return Some(l),
            proc_macro2::TokenTree::Punct(p) if p.as_char() == ',' => at_key = true,
            _ => at_key = false,
        }
    }
    None
}

fn given<T>(value: T, (key, span): (Span, Span)) -> Given<T> {
    Given { value, key, span }
}

/// Consumes whatever follows a key that is rejected, so that parsing goes on
/// with the next key.
fn skip_value(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(syn::Token![=]) {
        let _: Expr = meta.value()?.parse()?;
    } else if meta.input.peek(syn::token::Paren) {
        let _content;
        syn::parenthesized!(_content in meta.input);
    }
    Ok(())
}
