//! Whether a statement is a read, as far as the client can tell: its words outside quotes and
//! comments. Used by [`Reader`](crate::replica::Reader) to refuse writes before they reach a
//! server, and to know which statements cannot move the write position.
//!
//! What it cannot see: a function that writes (`SELECT nextval(..)`); on a replica the server
//! refuses that itself (SQLSTATE 25006), which the reader returns as an error.

use sea_orm::DbBackend;

use crate::sql_text::{Token, tokens};

/// The words a read starts with.
const READ_WORDS: [&str; 6] = ["SELECT", "WITH", "VALUES", "SHOW", "TABLE", "EXPLAIN"];

/// Statements a data-modifying `WITH` can hold (`WITH d AS (DELETE ...) SELECT ...`).
const WRITE_WORDS: [&str; 4] = ["INSERT", "UPDATE", "DELETE", "MERGE"];

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
    let tokens: Vec<Token<'_>> = tokens(sql, backend).map(|(_, t)| t).collect();
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

/// Whether `sql` cannot write, as far as its text shows: a read that is not a `WITH` (kept
/// out for safety, though a writing `WITH` is seen). A `SELECT` of a function that writes is
/// not seen.
pub(crate) fn surely_reads(sql: &str) -> bool {
    let first = sql.trim_start().get(..4).unwrap_or("");
    !first.eq_ignore_ascii_case("with") && check_read(sql, DbBackend::Postgres).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_runs_what_its_executable_comments_hold() {
        let my = DbBackend::MySql;
        assert_eq!(
            check_read("SELECT 1 /*!50000 ; DELETE FROM t */", my),
            Err(NotRead::Several)
        );
        assert_eq!(
            check_read("SELECT 1 /*M! ; DELETE FROM t */", my),
            Err(NotRead::Several)
        );
        assert_eq!(check_read("SELECT 1 /* ; DELETE FROM t */", my), Ok(()));
    }

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
