//! Whether a statement is a read, as far as the client can tell: its words outside quotes and
//! comments. Used by [`Reader`](super::Reader) to refuse writes before they reach a server, and
//! to know which statements cannot move the write position.
//!
//! What it cannot see: a function that writes (`SELECT nextval(..)`); on a replica the server
//! refuses that itself (SQLSTATE 25006), which the reader returns as an error.

use sea_orm::DbBackend;

/// The words a read starts with.
const READ_WORDS: [&str; 6] = ["SELECT", "WITH", "VALUES", "SHOW", "TABLE", "EXPLAIN"];

/// Statements a data-modifying `WITH` can hold (`WITH d AS (DELETE ...) SELECT ...`).
const WRITE_WORDS: [&str; 4] = ["INSERT", "UPDATE", "DELETE", "MERGE"];

/// One piece of a statement outside quotes and comments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token<'a> {
    /// A bare word or number (keywords, names not quoted).
    Word(&'a str),
    /// A quoted string or name: never a keyword.
    Quoted,
    /// Any other character (`(`, `)`, `;`, operators).
    Punct(char),
}

/// Why a statement is not a read, for the error that names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NotRead {
    /// Its first word is not one a read starts with (the word, upper case).
    FirstWord(String),
    /// More than one statement in the text.
    Several,
    /// A `WITH` holding an `INSERT`, `UPDATE`, `DELETE` or `MERGE`.
    WritingWith(&'static str),
    /// `EXPLAIN ANALYZE` runs the statement it explains: a write (its first word).
    ExplainsWrite(String),
    /// `SELECT ... INTO` creates a table (PostgreSQL) or writes a file or variable (MySQL).
    Into,
    /// `FOR UPDATE` / `FOR SHARE`: row locks, refused by replicas.
    Locks,
}

impl std::fmt::Display for NotRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotRead::FirstWord(w) => write!(f, "`{w}` is not a read"),
            NotRead::Several => write!(f, "the text holds more than one statement"),
            NotRead::WritingWith(w) => write!(f, "its `WITH` holds a `{w}`"),
            NotRead::ExplainsWrite(w) => write!(f, "it explains a `{w}`, which EXPLAIN may run"),
            NotRead::Into => write!(f, "`SELECT ... INTO` writes"),
            NotRead::Locks => write!(f, "`FOR UPDATE`/`FOR SHARE` locks rows"),
        }
    }
}

/// `Ok` when `sql` is one statement that reads only, as far as its text shows.
pub(crate) fn check_read(sql: &str, backend: DbBackend) -> Result<(), NotRead> {
    let tokens = tokens(sql, backend);
    let mut statements = tokens
        .split(|t| *t == Token::Punct(';'))
        .filter(|s| !s.is_empty());
    let first = statements.next().unwrap_or(&[]);
    if statements.next().is_some() {
        return Err(NotRead::Several);
    }
    check_statement(first)
}

fn check_statement(tokens: &[Token<'_>]) -> Result<(), NotRead> {
    let word = |i: usize| match tokens.get(i) {
        Some(Token::Word(w)) => Some(*w),
        _ => None,
    };
    let is = |i: usize, w: &str| word(i).is_some_and(|x| x.eq_ignore_ascii_case(w));
    let first = word(0).unwrap_or("");
    if !READ_WORDS.iter().any(|w| first.eq_ignore_ascii_case(w)) {
        return Err(NotRead::FirstWord(first.to_ascii_uppercase()));
    }
    if first.eq_ignore_ascii_case("EXPLAIN") {
        let explained = explained(tokens);
        let Some(inner) = tokens.get(explained..) else {
            return Ok(());
        };
        if let Err(NotRead::FirstWord(w)) = check_statement(inner) {
            return Err(NotRead::ExplainsWrite(w));
        }
    }
    for i in 0..tokens.len() {
        if is(i, "INTO") {
            return Err(NotRead::Into);
        }
        if is(i, "FOR")
            && (is(i + 1, "UPDATE")
                || is(i + 1, "SHARE")
                || (is(i + 1, "NO") && is(i + 2, "KEY"))
                || (is(i + 1, "KEY") && is(i + 2, "SHARE")))
        {
            return Err(NotRead::Locks);
        }
        // `AS [NOT] [MATERIALIZED] ( INSERT|UPDATE|DELETE|MERGE`: a data-modifying CTE.
        if is(i, "AS") {
            let mut j = i + 1;
            if is(j, "NOT") {
                j += 1;
            }
            if is(j, "MATERIALIZED") {
                j += 1;
            }
            if tokens.get(j) == Some(&Token::Punct('('))
                && let Some(w) = WRITE_WORDS.iter().find(|w| is(j + 1, w))
            {
                return Err(NotRead::WritingWith(w));
            }
        }
    }
    Ok(())
}

/// Where the statement an `EXPLAIN` explains begins: after `EXPLAIN`, its options in
/// parentheses or as bare words (`ANALYZE`, `VERBOSE`, ...).
fn explained(tokens: &[Token<'_>]) -> usize {
    let mut i = 1;
    if tokens.get(i) == Some(&Token::Punct('(')) {
        let mut depth = 0usize;
        while let Some(t) = tokens.get(i) {
            i += 1;
            match t {
                Token::Punct('(') => depth += 1,
                Token::Punct(')') => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
        }
        return i;
    }
    while let Some(Token::Word(w)) = tokens.get(i) {
        if READ_WORDS
            .iter()
            .chain(WRITE_WORDS.iter())
            .any(|r| w.eq_ignore_ascii_case(r))
        {
            break;
        }
        i += 1;
    }
    i
}

/// The statement's tokens, quotes and comments skipped. An unterminated quote or comment ends
/// the text (the server rejects it).
fn tokens(sql: &str, backend: DbBackend) -> Vec<Token<'_>> {
    let mysql = backend == DbBackend::MySql;
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&c) = bytes.get(i) {
        let next = bytes.get(i + 1).copied();
        match c {
            _ if c.is_ascii_whitespace() => i += 1,
            b'-' if next == Some(b'-') => i = line_end(bytes, i),
            b'#' if mysql => i = line_end(bytes, i),
            b'/' if next == Some(b'*') => i = comment_end(bytes, i, !mysql),
            b'\'' => {
                // MySQL escapes with backslashes in every string; PostgreSQL in E'' only.
                let escapes = mysql || e_prefixed(bytes, i);
                i = quote_end(bytes, i, b'\'', escapes);
                out.push(Token::Quoted);
            }
            b'"' => {
                i = quote_end(bytes, i, b'"', mysql);
                out.push(Token::Quoted);
            }
            b'`' if backend != DbBackend::Postgres => {
                i = quote_end(bytes, i, b'`', false);
                out.push(Token::Quoted);
            }
            b'[' if backend == DbBackend::Sqlite => {
                i = bytes[i..]
                    .iter()
                    .position(|&b| b == b']')
                    .map_or(bytes.len(), |p| i + p + 1);
                out.push(Token::Quoted);
            }
            b'$' if backend == DbBackend::Postgres => match dollar_tag(bytes, i) {
                Some(tag) => {
                    i = find(bytes, i + tag, &bytes[i..i + tag]).map_or(bytes.len(), |e| e + tag);
                    out.push(Token::Quoted);
                }
                None => {
                    out.push(Token::Punct('$'));
                    i += 1;
                }
            },
            _ if is_word(c) => {
                let end = bytes[i..]
                    .iter()
                    .position(|&b| !is_word(b))
                    .map_or(bytes.len(), |p| i + p);
                out.push(Token::Word(sql.get(i..end).unwrap_or("")));
                i = end;
            }
            _ => {
                out.push(Token::Punct(char::from(c)));
                i += 1;
            }
        }
    }
    out
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

fn line_end(bytes: &[u8], from: usize) -> usize {
    bytes[from..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(bytes.len(), |p| from + p + 1)
}

/// The end of a `/* */` comment starting at `from`; PostgreSQL nests them.
fn comment_end(bytes: &[u8], from: usize, nests: bool) -> usize {
    let mut depth = 0usize;
    let mut i = from;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1)) {
            (b'/', Some(b'*')) if nests || depth == 0 => {
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

/// The end of a quoted string or name opened at `from`; a doubled quote stays inside.
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

/// Whether the quote at `at` opens an `E'...'` string.
fn e_prefixed(bytes: &[u8], at: usize) -> bool {
    at >= 1 && matches!(bytes[at - 1], b'e' | b'E') && (at < 2 || !is_word(bytes[at - 2]))
}

/// The length of a dollar-quote tag (`$$`, `$body$`) at `from`, if one starts there.
fn dollar_tag(bytes: &[u8], from: usize) -> Option<usize> {
    // `$1` is a parameter, and a tag cannot follow a word character (`a$b` is a name).
    if from > 0 && is_word(bytes[from - 1]) {
        return None;
    }
    let rest = bytes.get(from + 1..)?;
    let len = rest.iter().position(|&b| b == b'$')?;
    let tag = &rest[..len];
    let valid = tag
        .first()
        .is_none_or(|b| b.is_ascii_alphabetic() || *b == b'_' || *b >= 0x80)
        && tag.iter().all(|&b| is_word(b));
    valid.then_some(len + 2)
}

fn find(bytes: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    bytes
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_hidden_in_reads_are_seen() {
        let pg = DbBackend::Postgres;
        for (sql, why) in [
            (
                "WITH d AS (DELETE FROM t RETURNING id) SELECT * FROM d",
                NotRead::WritingWith("DELETE"),
            ),
            (
                "with a as (select 1), b as not materialized (insert into t values (1)) select 1",
                NotRead::WritingWith("INSERT"),
            ),
            ("SELECT 1; DELETE FROM t", NotRead::Several),
            ("SELECT 1;;  select 2 ;", NotRead::Several),
            (
                "EXPLAIN ANALYZE DELETE FROM t",
                NotRead::ExplainsWrite("DELETE".into()),
            ),
            (
                "EXPLAIN (ANALYZE, FORMAT JSON) UPDATE t SET a = 1",
                NotRead::ExplainsWrite("UPDATE".into()),
            ),
            ("SELECT * INTO t2 FROM t", NotRead::Into),
            ("SELECT * FROM t FOR NO KEY UPDATE", NotRead::Locks),
            ("SELECT E'it\\'s'; DELETE FROM t", NotRead::Several),
            ("DELETE FROM t", NotRead::FirstWord("DELETE".into())),
            ("", NotRead::FirstWord(String::new())),
        ] {
            assert_eq!(check_read(sql, pg), Err(why), "{sql}");
        }
        // MySQL: a backslash escapes a quote, so this text holds two statements.
        assert_eq!(
            check_read("SELECT 'a\\'' ; DELETE FROM t; -- '", DbBackend::MySql),
            Err(NotRead::Several)
        );
        for sql in [
            "SELECT 'a; DELETE FROM t'",
            "SELECT $$; delete$$, $x$ ; $x$ FROM t;",
            "SELECT 1 /* ; /* nested ; */ insert */ -- ; delete\n",
            "WITH d AS (SELECT \"delete\" FROM t) SELECT * FROM d;",
            "SELECT a AS update FROM t",
            "EXPLAIN SELECT 1",
            "EXPLAIN ANALYZE VERBOSE SELECT 1",
            "SELECT $1::text",
        ] {
            assert_eq!(check_read(sql, pg), Ok(()), "{sql}");
        }
    }
}
