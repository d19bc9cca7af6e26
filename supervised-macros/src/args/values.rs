//! Readers of the attribute's values: a string, a duration, one of a set of
//! words, a boolean and an integer, each reporting a value of the wrong
//! kind at its span.

use syn::{Expr, Lit, LitStr};

use crate::duration::{self, Dur};
use crate::errors::Errors;

use super::hints::example;

/// Looks through the invisible groups that `macro_rules!` wraps around
/// fragments.
pub(super) fn ungroup(expr: &Expr) -> &Expr {
    match expr {
        Expr::Group(g) => ungroup(&g.expr),
        other => other,
    }
}

fn kind_of(expr: &Expr) -> &'static str {
    match expr {
        Expr::Lit(lit) => match lit.lit {
            Lit::Str(_) => "a string",
            Lit::Int(_) => "an integer",
            Lit::Float(_) => "a float",
            Lit::Bool(_) => "a boolean",
            Lit::Char(_) => "a character",
            _ => "a literal of another type",
        },
        Expr::Path(_) => "a name",
        _ => "an expression",
    }
}

pub(super) fn string<'a>(value: &'a Expr, key: &str, errors: &mut Errors) -> Option<&'a LitStr> {
    match value {
        Expr::Lit(syn::ExprLit {
            lit: Lit::Str(s), ..
        }) => Some(s),
        other => {
            errors.spanned(
                other,
                format_args!(
                    "`{key}` takes a string literal, found {}: write `{key} = {}`",
                    kind_of(other),
                    example(key)
                ),
            );
            None
        }
    }
}

pub(super) fn dur(value: &Expr, key: &str, errors: &mut Errors) -> Option<Dur> {
    if let Expr::Lit(syn::ExprLit {
        lit: Lit::Int(i), ..
    }) = value
    {
        errors.spanned(
            value,
            format_args!(
                "`{key}` takes a duration string, found an integer: write \
                 `{key} = \"{}s\"` (or another unit: ms, s, m, h)",
                i.base10_digits()
            ),
        );
        return None;
    }
    let s = string(value, key, errors)?;
    match duration::parse(&s.value()) {
        Ok(d) if d.is_zero() => {
            errors.spanned(
                s,
                format_args!(
                    "`{key}` must be greater than zero; write a positive duration such as \
                     `{key} = {}`",
                    example(key)
                ),
            );
            None
        }
        Ok(d) => Some(d),
        Err(e) => {
            errors.spanned(s, format_args!("invalid `{key}`: {e}"));
            None
        }
    }
}

pub(super) fn word(
    value: &Expr,
    key: &str,
    choices: &[(&str, &'static str)],
    errors: &mut Errors,
) -> Option<&'static str> {
    let list = choices
        .iter()
        .map(|(w, _)| format!("\"{w}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let s = match value {
        // `restart = always` instead of `restart = "always"`.
        Expr::Path(p) if p.path.get_ident().is_some() => {
            let w = p
                .path
                .get_ident()
                .map(ToString::to_string)
                .unwrap_or_default();
            errors.spanned(
                value,
                format_args!(
                    "`{key}` takes a string literal: write `{key} = \"{w}\"` (one of {list})"
                ),
            );
            return None;
        }
        _ => string(value, key, errors)?,
    };
    let got = s.value();
    match choices.iter().find(|(w, _)| *w == got) {
        Some((_, variant)) => Some(variant),
        None => {
            errors.spanned(
                s,
                format_args!("unknown `{key}` value \"{got}\"; write one of {list}"),
            );
            None
        }
    }
}

pub(super) fn boolean(value: &Expr, key: &str, errors: &mut Errors) -> Option<bool> {
    match value {
        Expr::Lit(syn::ExprLit {
            lit: Lit::Bool(b), ..
        }) => Some(b.value),
        Expr::Lit(syn::ExprLit {
            lit: Lit::Str(s), ..
        }) if matches!(s.value().as_str(), "true" | "false") => {
            errors.spanned(
                value,
                format_args!(
                    "`{key}` takes `true` or `false` without quotes: write `{key} = {}`",
                    s.value()
                ),
            );
            None
        }
        other => {
            errors.spanned(
                other,
                format_args!(
                    "`{key}` takes `true` or `false`, found {}: write `{key} = true`",
                    kind_of(other)
                ),
            );
            None
        }
    }
}

pub(super) fn int(value: &Expr, key: &str, errors: &mut Errors) -> Option<u32> {
    match value {
        Expr::Lit(syn::ExprLit {
            lit: Lit::Int(i), ..
        }) => match i.base10_parse::<u32>() {
            Ok(n) => Some(n),
            Err(_) => {
                errors.spanned(
                    i,
                    format_args!("`{key}` must fit a `u32` (at most {})", u32::MAX),
                );
                None
            }
        },
        Expr::Lit(syn::ExprLit {
            lit: Lit::Str(s), ..
        }) => {
            let hint = s
                .value()
                .trim()
                .parse::<u32>()
                .map_or_else(|_| example(key).to_owned(), |n| n.to_string());
            errors.spanned(
                s,
                format_args!("`{key}` takes an integer, found a string: write `{key} = {hint}`"),
            );
            None
        }
        Expr::Unary(u) if matches!(u.op, syn::UnOp::Neg(_)) => {
            errors.spanned(
                value,
                format_args!("`{key}` cannot be negative; write `{key} = 0` to allow no restart"),
            );
            None
        }
        other => {
            errors.spanned(
                other,
                format_args!(
                    "`{key}` takes an integer literal, found {}: write `{key} = {}`",
                    kind_of(other),
                    example(key)
                ),
            );
            None
        }
    }
}
