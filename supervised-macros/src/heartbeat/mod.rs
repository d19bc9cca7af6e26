//! Heartbeat injection: one heartbeat at the start of every iteration of each
//! loop the fn's body reaches without entering another loop, a closure, an
//! async block or a nested item.
//!
//! The body is walked as tokens, not parsed: the attribute runs on every
//! build of the user's crate, and a full parse of each body is most of its
//! cost. Where a loop's head could be read two ways (a `while` or `for`
//! whose condition holds a block), the candidate heads are parsed, and only
//! they.

use proc_macro2::{Delimiter, Group, Spacing, Span, TokenStream, TokenTree};

mod scan;

use scan::{
    brace, ident_is, is_punct, loop_body, macro_path, skip_closure, skip_item, skip_past_semi,
    BEFORE_EXPR, KEYWORDS,
};

/// What injection found in a body.
#[derive(Default)]
pub(crate) struct Injected {
    /// How many loops received a heartbeat.
    pub(crate) loops: usize,
    /// A macro call whose tokens hold a loop keyword (`loop`, `while`,
    /// `for`), which the attribute cannot see into: its path and span.
    pub(crate) unseen: Option<(String, Span)>,
}

/// Inserts `beat` as the first statement of the body of every `loop`,
/// `while` and `for` reached from `body` (the fn's body, braces included):
/// statements, `let` initialisers, `if`/`else` branches, `match` arms, plain,
/// labelled and `unsafe` blocks, and any other expression. The bodies of
/// those loops are not entered (a nested loop pays nothing), nor are
/// closures, async blocks, `const` blocks and nested items, which run on
/// their own schedule. `while` conditions are not entered either; the
/// iterator expression of a `for` is.
///
/// The heartbeat goes first so that `continue` (which skips the rest of the
/// body, not its start) still records the iteration.
pub(crate) fn inject(body: &Group, beat: &TokenStream) -> (Group, Injected) {
    let mut walker = Walker {
        beat: beat.clone(),
        found: Injected::default(),
    };
    let mut out = TokenTree::Group(body.clone());
    walker.enter(&mut out);
    match out {
        TokenTree::Group(out) => (out, walker.found),
        _ => unreachable!("a group stays a group"),
    }
}

/// `stream` in a group like `like`, with its span.
fn regroup(like: &Group, stream: TokenStream) -> Group {
    let mut group = Group::new(like.delimiter(), stream);
    group.set_span(like.span());
    group
}

struct Walker {
    beat: TokenStream,
    found: Injected,
}

impl Walker {
    /// Walks `tokens`, replacing the groups it changes; `true` when it
    /// changed one.
    fn walk(&mut self, tokens: &mut [TokenTree]) -> bool {
        let mut changed = false;
        let mut i = 0;
        // Whether an expression may start at `i` (for closures).
        let mut expr_start = true;
        while i < tokens.len() {
            let (next, starts) = match &tokens[i] {
                TokenTree::Ident(ident) => {
                    let word = ident.to_string();
                    self.ident(tokens, i, &word, &mut changed)
                }
                TokenTree::Punct(p) => match p.as_char() {
                    // An attribute: `#[..]` or `#![..]`.
                    '#' if matches!(tokens.get(i + 1), Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Bracket) => {
                        (i + 2, expr_start)
                    }
                    '#' if is_punct(tokens.get(i + 1), '!') => (i + 3, expr_start),
                    // A lifetime or a label: its name is not a keyword.
                    '\'' => (i + 2, false),
                    '|' if expr_start => (skip_closure(tokens, i), true),
                    // `||` and `|=` between operands.
                    '|' if p.spacing() == Spacing::Joint => (i + 2, true),
                    '?' => (i + 1, false),
                    _ => (i + 1, true),
                },
                TokenTree::Group(_) => {
                    changed |= self.enter(&mut tokens[i]);
                    (i + 1, false)
                }
                TokenTree::Literal(_) => (i + 1, false),
            };
            i = next;
            expr_start = starts;
        }
        changed
    }

    /// Handles the ident `word` at `i`: returns where to go on, and whether
    /// an expression may start there.
    fn ident(
        &mut self,
        tokens: &mut [TokenTree],
        i: usize,
        word: &str,
        changed: &mut bool,
    ) -> (usize, bool) {
        let next = tokens.get(i + 1);
        match word {
            "loop" if brace(next) => {
                *changed |= self.instrument(&mut tokens[i + 1]);
                (i + 2, false)
            }
            "while" => match loop_body(tokens, i, i + 1, "while") {
                Some(body) => {
                    *changed |= self.instrument(&mut tokens[body]);
                    (body + 1, false)
                }
                None => (i + 1, true),
            },
            // `for<'a>` is a bound, not a loop.
            "for" if !is_punct(next, '<') => {
                let Some(at_in) = (i + 1..tokens.len()).find(|&j| ident_is(tokens.get(j), "in"))
                else {
                    return (i + 1, true);
                };
                match loop_body(tokens, i, at_in + 1, "for") {
                    Some(body) => {
                        // The iterator expression runs once, before the loop.
                        *changed |= self.walk(&mut tokens[at_in + 1..body]);
                        *changed |= self.instrument(&mut tokens[body]);
                        (body + 1, false)
                    }
                    None => (i + 1, true),
                }
            }
            // Async blocks and closures run on their own schedule.
            "async" | "move" if !ident_is(next, "fn") && !ident_is(next, "unsafe") => {
                let mut j = i + 1;
                if word == "async" && ident_is(tokens.get(j), "move") {
                    j += 1;
                }
                if brace(tokens.get(j)) {
                    (j + 1, false)
                } else if is_punct(tokens.get(j), '|') {
                    (skip_closure(tokens, j), true)
                } else {
                    (i + 1, true)
                }
            }
            // `*const T` is a pointer type, `&raw const x` a raw borrow.
            "const"
                if i > 0
                    && (is_punct(tokens.get(i - 1), '*')
                        || (ident_is(tokens.get(i - 1), "raw")
                            && i > 1
                            && is_punct(tokens.get(i - 2), '&'))) =>
            {
                (i + 1, false)
            }
            // A `const` block; `const fn` goes on to `fn`; else a `const` item.
            "const" if brace(next) => (i + 2, false),
            "const"
                if ident_is(next, "fn")
                    || ident_is(next, "unsafe")
                    || ident_is(next, "async")
                    || ident_is(next, "extern") =>
            {
                (i + 1, false)
            }
            "const" | "static" | "use" | "type" => (skip_past_semi(tokens, i), true),
            "extern" if ident_is(next, "crate") => (skip_past_semi(tokens, i), true),
            "extern" if matches!(next, Some(TokenTree::Literal(_))) && brace(tokens.get(i + 2)) => {
                (i + 3, true)
            }
            // A nested item: up to its body, or its `;`.
            "fn" if matches!(next, Some(TokenTree::Ident(_))) => (skip_item(tokens, i), true),
            "impl" | "mod" | "trait" | "struct" | "enum" => (skip_item(tokens, i), true),
            "union"
                if matches!(next, Some(TokenTree::Ident(_)))
                    && (brace(tokens.get(i + 2)) || is_punct(tokens.get(i + 2), '<')) =>
            {
                (skip_item(tokens, i), true)
            }
            "macro_rules" if is_punct(next, '!') => {
                let mut j = i + 3;
                if matches!(tokens.get(j), Some(TokenTree::Group(_))) {
                    j += 1;
                }
                if is_punct(tokens.get(j), ';') {
                    j += 1;
                }
                (j, true)
            }
            // A macro call: its tokens are not Rust the attribute can see.
            _ if !KEYWORDS.contains(&word)
                && matches!(next, Some(TokenTree::Punct(p)) if p.as_char() == '!' && p.spacing() == Spacing::Alone)
                && matches!(tokens.get(i + 2), Some(TokenTree::Group(_))) =>
            {
                if self.found.unseen.is_none() {
                    if let Some(TokenTree::Group(g)) = tokens.get(i + 2) {
                        if crate::tokens::mentions(&g.stream(), &["loop", "while", "for"]) {
                            let span = tokens[i].span();
                            self.found.unseen = Some((macro_path(tokens, i), span));
                        }
                    }
                }
                (i + 3, false)
            }
            _ => (i + 1, BEFORE_EXPR.contains(&word)),
        }
    }

    /// Walks into a group that is not a loop's body.
    fn enter(&mut self, token: &mut TokenTree) -> bool {
        let TokenTree::Group(group) = token else {
            return false;
        };
        let mut inner: Vec<TokenTree> = group.stream().into_iter().collect();
        if !self.walk(&mut inner) {
            return false;
        }
        *token = TokenTree::Group(regroup(group, inner.into_iter().collect()));
        true
    }

    /// Puts the heartbeat first in a loop's body, after its inner
    /// attributes.
    fn instrument(&mut self, token: &mut TokenTree) -> bool {
        let TokenTree::Group(group) = token else {
            return false;
        };
        if group.delimiter() == Delimiter::None {
            // A `macro_rules!` fragment around the block: into the block.
            let mut inner: Vec<TokenTree> = group.stream().into_iter().collect();
            let changed = inner
                .first_mut()
                .is_some_and(|block| self.instrument(block));
            *token = TokenTree::Group(regroup(group, inner.into_iter().collect()));
            return changed;
        }
        let inner: Vec<TokenTree> = group.stream().into_iter().collect();
        let mut at = 0;
        while is_punct(inner.get(at), '#') && is_punct(inner.get(at + 1), '!') {
            at += 3;
        }
        let at = at.min(inner.len());
        let mut stream: TokenStream = inner[..at].iter().cloned().collect();
        stream.extend(self.beat.clone());
        stream.extend(std::iter::once(TokenTree::Punct(proc_macro2::Punct::new(
            ';',
            Spacing::Alone,
        ))));
        stream.extend(inner[at..].iter().cloned());
        *token = TokenTree::Group(regroup(group, stream));
        self.found.loops += 1;
        true
    }
}

#[cfg(test)]
mod tests;
