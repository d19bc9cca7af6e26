//! Reading Rust from tokens: where a loop's body, a closure, an item or a
//! macro call starts and ends, without parsing the code around them.

use proc_macro2::{Delimiter, Group, Spacing, TokenStream, TokenTree};

/// Keywords: never the name of a macro, and those that start an expression
/// after them.
pub(super) const KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern",
    "false", "fn", "for", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub",
    "ref", "return", "self", "Self", "static", "struct", "super", "trait", "true", "type",
    "unsafe", "use", "where", "while", "yield",
];

/// Keywords followed by a block that is theirs.
pub(super) const TAKES_BLOCK: &[&str] = &[
    "match", "if", "else", "loop", "while", "for", "unsafe", "async", "const", "move",
];

/// After these keywords an expression starts (so `|` opens a closure).
pub(super) const BEFORE_EXPR: &[&str] = &[
    "return", "break", "in", "yield", "else", "if", "while", "match",
];

pub(super) fn is_punct(t: Option<&TokenTree>, c: char) -> bool {
    matches!(t, Some(TokenTree::Punct(p)) if p.as_char() == c)
}

pub(super) fn ident_is(t: Option<&TokenTree>, s: &str) -> bool {
    matches!(t, Some(TokenTree::Ident(i)) if i == s)
}

/// A brace group, also as a `macro_rules!` fragment (`$body:block`), which
/// arrives wrapped in an invisible group.
pub(super) fn brace(t: Option<&TokenTree>) -> bool {
    match t {
        Some(TokenTree::Group(g)) => match g.delimiter() {
            Delimiter::Brace => true,
            Delimiter::None => {
                let mut inner = g.stream().into_iter();
                matches!((inner.next(), inner.next()), (Some(TokenTree::Group(b)), None) if b.delimiter() == Delimiter::Brace)
            }
            _ => false,
        },
        _ => false,
    }
}

/// Whether `tokens` hold a macro call: a name, `!`, and a group.
fn calls_macro(tokens: &[TokenTree]) -> bool {
    tokens.windows(3).any(|w| {
        matches!(&w[0], TokenTree::Ident(_))
            && matches!(&w[1], TokenTree::Punct(p) if p.as_char() == '!' && p.spacing() == Spacing::Alone)
            && matches!(&w[2], TokenTree::Group(_))
    })
}

/// `=>` at `j`.
fn fat_arrow(tokens: &[TokenTree], j: usize) -> bool {
    matches!(tokens.get(j), Some(TokenTree::Punct(p)) if p.as_char() == '=' && p.spacing() == Spacing::Joint)
        && is_punct(tokens.get(j + 1), '>')
}

/// The index of the body of the `while` or `for` at `keyword`, whose head
/// (condition or iterator) starts at `from`. Without a brace group in the
/// head (nor a keyword that takes one), the body is the first brace group;
/// otherwise the body is the first
/// brace group after which the loop parses (a struct literal cannot stand
/// there, so the first complete loop is the one Rust reads).
pub(super) fn loop_body(
    tokens: &[TokenTree],
    keyword: usize,
    from: usize,
    kind: &str,
) -> Option<usize> {
    let mut candidates = (from..tokens.len()).filter(|&j| brace(tokens.get(j)));
    let first = candidates.next()?;
    let head = &tokens[from..first];
    // A head that is empty, or holds a block or a keyword that takes one,
    // may end at a later group.
    // A macro call in the head may take a brace group as its input.
    let plain = !head.is_empty()
        && !calls_macro(head)
        && !matches!(head.last(), Some(TokenTree::Punct(p)) if p.as_char() == '!')
        && !head.iter().any(|t| match t {
            TokenTree::Group(g) => matches!(g.delimiter(), Delimiter::Brace | Delimiter::None),
            TokenTree::Punct(p) => p.as_char() == '|' || p.as_char() == '\'',
            TokenTree::Ident(i) => TAKES_BLOCK.iter().any(|k| i == k),
            TokenTree::Literal(_) => false,
        });
    if plain {
        return Some(first);
    }
    std::iter::once(first)
        .chain(candidates)
        .find(|&j| parses_as_loop(&tokens[keyword..j], kind))
}

/// Whether `head` followed by an empty block is a whole `while` or `for`.
fn parses_as_loop(head: &[TokenTree], kind: &str) -> bool {
    let mut stream: TokenStream = head.iter().cloned().collect();
    stream.extend(std::iter::once(TokenTree::Group(Group::new(
        Delimiter::Brace,
        TokenStream::new(),
    ))));
    match kind {
        "while" => syn::parse2::<syn::ExprWhile>(stream).is_ok(),
        _ => syn::parse2::<syn::ExprForLoop>(stream).is_ok(),
    }
}

/// Past the closure whose parameters start at `i` (a `|` or `||`), or
/// just past that `|` when it does not start one (a match arm's leading
/// `|`, or an operator): parameters that run into a `;` or a `=>`, or a
/// body that holds a `=>`, are not a closure's.
pub(super) fn skip_closure(tokens: &[TokenTree], i: usize) -> usize {
    let not_a_closure = i + 1;
    let mut j = i + 1;
    let empty = matches!(&tokens[i], TokenTree::Punct(p) if p.spacing() == Spacing::Joint)
        && is_punct(tokens.get(j), '|');
    if empty {
        j += 1;
    } else {
        loop {
            if j >= tokens.len() || is_punct(tokens.get(j), ';') || fat_arrow(tokens, j) {
                return not_a_closure;
            }
            if is_punct(tokens.get(j), '|') {
                break;
            }
            j += 1;
        }
        j += 1;
    }
    // `-> T { .. }`: the body is the first block outside the type's `<..>`.
    if is_punct(tokens.get(j), '-') && is_punct(tokens.get(j + 1), '>') {
        j += 2;
        let mut angle = 0usize;
        while j < tokens.len() {
            match &tokens[j] {
                TokenTree::Punct(p) if p.as_char() == '<' => angle += 1,
                TokenTree::Punct(p) if p.as_char() == '>' => angle = angle.saturating_sub(1),
                TokenTree::Group(_) if angle == 0 && brace(tokens.get(j)) => return j + 1,
                _ => {}
            }
            j += 1;
        }
        return j;
    }
    // Otherwise an expression, which ends at a `,` or `;` of this level
    // (not one between a turbofish's `::<` and `>`).
    let mut turbofish = 0usize;
    while j < tokens.len() {
        if let TokenTree::Punct(p) = &tokens[j] {
            match p.as_char() {
                ';' => break,
                ',' if turbofish == 0 => break,
                '<' if j >= 2
                    && is_punct(tokens.get(j - 1), ':')
                    && is_punct(tokens.get(j - 2), ':') =>
                {
                    turbofish += 1
                }
                '>' if turbofish > 0 => turbofish -= 1,
                '=' if fat_arrow(tokens, j) => return not_a_closure,
                _ => {}
            }
        }
        j += 1;
    }
    j
}

/// Past the `;` that ends the item at `i`.
pub(super) fn skip_past_semi(tokens: &[TokenTree], i: usize) -> usize {
    (i..tokens.len())
        .find(|&j| is_punct(tokens.get(j), ';'))
        .map_or(tokens.len(), |j| j + 1)
}

/// Past the item at `i`: its first brace group outside `<..>`, or its `;`.
pub(super) fn skip_item(tokens: &[TokenTree], i: usize) -> usize {
    let mut angle = 0usize;
    let mut j = i + 1;
    while j < tokens.len() {
        match &tokens[j] {
            TokenTree::Punct(p) => match p.as_char() {
                '<' => angle += 1,
                // `->` is not a closing bracket.
                '>' if !(j > 0 && is_punct(tokens.get(j - 1), '-')) => {
                    angle = angle.saturating_sub(1)
                }
                ';' if angle == 0 => return j + 1,
                _ => {}
            },
            TokenTree::Group(g) if g.delimiter() == Delimiter::Brace && angle == 0 => return j + 1,
            _ => {}
        }
        j += 1;
    }
    j
}

/// The path of the macro whose name is at `i`, e.g. `tokio::select`.
pub(super) fn macro_path(tokens: &[TokenTree], i: usize) -> String {
    let mut start = i;
    while start >= 3
        && is_punct(tokens.get(start - 1), ':')
        && is_punct(tokens.get(start - 2), ':')
        && matches!(tokens.get(start - 3), Some(TokenTree::Ident(_)))
    {
        start -= 3;
    }
    if start >= 2 && is_punct(tokens.get(start - 1), ':') && is_punct(tokens.get(start - 2), ':') {
        start -= 2;
    }
    tokens[start..=i].iter().map(ToString::to_string).collect()
}
