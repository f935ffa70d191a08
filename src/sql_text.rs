//! Where SQL text's quotes, names and comments begin and end, per backend dialect.
//!
//! [`tokens`] walks a statement's text and yields what lies outside string literals, quoted
//! names and comments, without allocating: bare words, single punctuation characters, each
//! quoted string or name as one opaque [`Token::Quoted`], and PostgreSQL's `$N` parameters.
//! Each token comes with the byte offset where it starts, so that callers can cut the text
//! there. An unterminated quote or comment runs to the end of the text (the server rejects
//! it), and any byte sequence is accepted: the scanner never panics.
//!
//! The dialect rules:
//! - PostgreSQL: `E'...'` strings take backslash escapes (plain `'...'` do not); `/* */`
//!   comments nest; `$tag$ ... $tag$` dollar quotes; `$N` is a parameter, but a word may hold
//!   `$` after its first character (`a$1` is a name).
//! - MySQL: backslash escapes in both `'...'` and `"..."` strings; `` `...` `` names; `#` and
//!   `-- ` (a space or control character after the dashes) comments; comments do not nest.
//! - SQLite: `[...]` and `` `...` `` names; comments do not nest.
//!
//! In every dialect a doubled quote character stays inside its quote, and `--` starts a
//! comment that runs to the end of the line.

use sea_orm::DbBackend;

/// One piece of a statement outside quotes and comments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Token<'a> {
    /// A bare word or number (keywords, names not quoted).
    Word(&'a str),
    /// A quoted string or name (dollar quotes included): never a keyword.
    Quoted,
    /// Any other character (`(`, `)`, `;`, operators, a `$` that opens nothing).
    Punct(char),
    /// PostgreSQL: a `$N` parameter outside words, quotes and comments; its digits.
    Param(&'a str),
}

/// The dialects whose rules differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Postgres,
    MySql,
    Sqlite,
}

/// The tokens of a statement's text, each with the byte offset where it starts: see
/// [`tokens`].
#[derive(Debug, Clone)]
pub(crate) struct Tokens<'a> {
    sql: &'a str,
    dialect: Dialect,
    /// Where the next token is looked for.
    pos: usize,
    /// Where the last word ended, when that word was `E` (or `e`): a quote right there opens
    /// an escape string (PostgreSQL).
    e_end: Option<usize>,
}

/// `sql`'s tokens outside quotes and comments by `backend`'s rules, with their byte offsets.
pub(crate) fn tokens(sql: &str, backend: DbBackend) -> Tokens<'_> {
    let dialect = match backend {
        DbBackend::Postgres => Dialect::Postgres,
        DbBackend::MySql => Dialect::MySql,
        _ => Dialect::Sqlite,
    };
    Tokens {
        sql,
        dialect,
        pos: 0,
        e_end: None,
    }
}

impl<'a> Iterator for Tokens<'a> {
    type Item = (usize, Token<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let bytes = self.sql.as_bytes();
        let pg = self.dialect == Dialect::Postgres;
        let mysql = self.dialect == Dialect::MySql;
        loop {
            let start = self.pos;
            let c = *bytes.get(start)?;
            let next = bytes.get(start + 1).copied();
            let (end, token) = match c {
                _ if c.is_ascii_whitespace() => (start + 1, None),
                b'-' if next == Some(b'-')
                    && (!mysql
                        || bytes
                            .get(start + 2)
                            .is_none_or(|b| b.is_ascii_whitespace() || b.is_ascii_control())) =>
                {
                    (line_end(bytes, start), None)
                }
                b'#' if mysql => (line_end(bytes, start), None),
                // MySQL runs what is inside `/*! ... */` (MariaDB: `/*M! ... */`): only the
                // opener (and its version number) is a comment.
                b'/' if mysql && next == Some(b'*') && executable_comment(bytes, start) => (
                    run_end(bytes, executable_comment_body(bytes, start), |b| {
                        b.is_ascii_digit()
                    }),
                    None,
                ),
                b'/' if next == Some(b'*') => (comment_end(bytes, start, pg), None),
                b'\'' => {
                    let escape_string = pg && self.e_end == Some(start);
                    let mut end = quote_end(bytes, start, b'\'', mysql || escape_string);
                    // An escape string goes on in a quote after a line break (PostgreSQL's
                    // string continuation), still taking backslash escapes.
                    while escape_string && let Some(quote) = continuation(bytes, end) {
                        end = quote_end(bytes, quote, b'\'', true);
                    }
                    (end, Some(Token::Quoted))
                }
                b'"' => (quote_end(bytes, start, b'"', mysql), Some(Token::Quoted)),
                b'`' if !pg => (quote_end(bytes, start, b'`', false), Some(Token::Quoted)),
                b'[' if self.dialect == Dialect::Sqlite => (
                    find(bytes, start + 1, b"]").map_or(bytes.len(), |p| p + 1),
                    Some(Token::Quoted),
                ),
                b'$' if pg && next.is_some_and(|b| b.is_ascii_digit()) => {
                    let end = run_end(bytes, start + 1, |b| b.is_ascii_digit());
                    let digits = self.sql.get(start + 1..end).unwrap_or_default();
                    (end, Some(Token::Param(digits)))
                }
                b'$' if pg => match dollar_tag(bytes, start) {
                    Some(tag) => {
                        let delimiter = bytes.get(start..start + tag).unwrap_or_default();
                        let end = find(bytes, start + tag, delimiter)
                            .map_or(bytes.len(), |p| p + delimiter.len());
                        (end, Some(Token::Quoted))
                    }
                    None => (start + 1, Some(Token::Punct('$'))),
                },
                _ if is_word(c) => {
                    let end = run_end(bytes, start, |b| is_word(b) || (pg && b == b'$'));
                    let word = self.sql.get(start..end).unwrap_or_default();
                    self.e_end = matches!(word, "E" | "e").then_some(end);
                    (end, Some(Token::Word(word)))
                }
                _ => (start + 1, Some(Token::Punct(char::from(c)))),
            };
            // Every arm moves forward; `max` keeps it so whatever the arms compute.
            self.pos = end.max(start + 1);
            if let Some(token) = token {
                return Some((start, token));
            }
        }
    }
}

impl std::iter::FusedIterator for Tokens<'_> {}

impl Tokens<'_> {
    /// Where the last token returned ends (a quoted one's text is `sql[start..end]`).
    pub(crate) fn end(&self) -> usize {
        self.pos
    }
}

/// A byte of a bare word: ASCII letters, digits, `_`, and any byte of a non-ASCII character.
fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// Where a PostgreSQL string that ended at `from` goes on: a quote after whitespace that holds
/// a line break, `--` comments allowed (the lexer's `quotecontinue`).
fn continuation(bytes: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    let mut newline = false;
    loop {
        match bytes.get(at)? {
            b'\n' | b'\r' => {
                newline = true;
                at += 1;
            }
            b' ' | b'\t' | b'\x0c' => at += 1,
            // A comment runs to its line break, which it takes.
            b'-' if bytes.get(at + 1) == Some(&b'-') => {
                at = line_end(bytes, at);
                newline = true;
            }
            b'\'' if newline => return Some(at),
            _ => return None,
        }
    }
}

/// The end of the run of bytes from `from` that satisfy `keep`.
fn run_end(bytes: &[u8], from: usize, keep: impl Fn(u8) -> bool) -> usize {
    bytes
        .get(from..)
        .and_then(|rest| rest.iter().position(|&b| !keep(b)))
        .map_or(bytes.len(), |p| from + p)
}

/// Just after the line (its `\n` included) holding `from`.
fn line_end(bytes: &[u8], from: usize) -> usize {
    find(bytes, from, b"\n").map_or(bytes.len(), |p| p + 1)
}

/// Whether the `/*` at `from` opens MySQL's executable comment (`/*!`, MariaDB's `/*M!`).
fn executable_comment(bytes: &[u8], from: usize) -> bool {
    match bytes.get(from + 2) {
        Some(b'!') => true,
        Some(b'M') => bytes.get(from + 3) == Some(&b'!'),
        _ => false,
    }
}

/// Where the statement text inside an executable comment opened at `from` begins (before its
/// optional version number).
fn executable_comment_body(bytes: &[u8], from: usize) -> usize {
    if bytes.get(from + 2) == Some(&b'M') {
        from + 4
    } else {
        from + 3
    }
}

/// The end of a `/* */` comment opened at `from`; with `nests`, inner `/*` open levels.
fn comment_end(bytes: &[u8], from: usize, nests: bool) -> usize {
    if !nests {
        return find(bytes, from + 2, b"*/").map_or(bytes.len(), |p| p + 2);
    }
    let mut depth = 0usize;
    let mut i = from;
    while let Some(&c) = bytes.get(i) {
        match (c, bytes.get(i + 1)) {
            (b'/', Some(b'*')) => {
                depth += 1;
                i += 2;
            }
            (b'*', Some(b'/')) => {
                depth = depth.saturating_sub(1);
                i += 2;
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    bytes.len()
}

/// The end of a quoted string or name opened at `from`: a doubled quote stays inside; with
/// `escapes`, a backslash takes the next byte with it.
fn quote_end(bytes: &[u8], from: usize, quote: u8, escapes: bool) -> usize {
    let mut i = from + 1;
    while let Some(&b) = bytes.get(i) {
        if escapes && b == b'\\' {
            i += 2;
        } else if b == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
            } else {
                return i + 1;
            }
        } else {
            i += 1;
        }
    }
    bytes.len()
}

/// The length of a dollar-quote delimiter (`$$`, `$body$`) at `from`, if one opens there.
fn dollar_tag(bytes: &[u8], from: usize) -> Option<usize> {
    // A tag cannot follow a word character (`1$a$` is no dollar quote).
    if from
        .checked_sub(1)
        .and_then(|p| bytes.get(p))
        .is_some_and(|&b| is_word(b))
    {
        return None;
    }
    let rest = bytes.get(from + 1..)?;
    let len = rest.iter().position(|&b| b == b'$')?;
    let tag = rest.get(..len)?;
    let valid = tag.first().is_none_or(|b| !b.is_ascii_digit()) && tag.iter().all(|&b| is_word(b));
    valid.then_some(len + 2)
}

/// Where `needle` (not empty) first occurs at or after `from`.
fn find(bytes: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    bytes
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
}

#[cfg(test)]
mod tests;
