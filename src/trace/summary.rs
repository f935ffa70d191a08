//! What a statement does and to which table, read from its text for span names and metric
//! attributes (`db.operation.name`, `db.collection.name`): the first keyword, and the table
//! after `FROM` (SELECT, DELETE), `INTO` (INSERT) or `UPDATE`. A statement we cannot read
//! (a CTE, a call, several statements) keeps its keyword and has no collection: OpenTelemetry's
//! conventions ask for no collection rather than a wrong one.

use std::borrow::Cow;

use sea_orm::DbBackend;

use crate::sql_text::{Token, tokens};

/// A statement's operation and collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Summary<'a> {
    /// The first keyword, upper case (`SELECT`); `None` for text with no word.
    pub operation: Option<Cow<'static, str>>,
    /// The table, as written but without its quotes (`public.accounts`).
    pub collection: Option<Cow<'a, str>>,
}

impl Summary<'_> {
    /// The span name the conventions ask for: `{operation} {collection}`, or the operation
    /// alone, or the system's name when the text has neither.
    pub fn span_name(&self, system: &'static str) -> Cow<'static, str> {
        match (&self.operation, &self.collection) {
            (Some(op), Some(table)) => Cow::Owned(format!("{op} {table}")),
            (Some(op), None) => op.clone(),
            (None, _) => Cow::Borrowed(system),
        }
    }
}

/// The keywords spelt in upper case without allocating.
const KNOWN: [&str; 22] = [
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "WITH",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "SAVEPOINT",
    "RELEASE",
    "SET",
    "RESET",
    "SHOW",
    "COPY",
    "CALL",
    "VALUES",
    "START",
    "PREPARE",
    "EXECUTE",
    "LOCK",
    "DISCARD",
    "REPLACE",
];

/// The longest first word taken as a keyword: it becomes a span name and a metric attribute,
/// whose values must stay few.
const KEYWORD_MAX: usize = 24;

/// Upper-case `word`, from [`KNOWN`] when it is one of them; any other word of ASCII letters
/// (`VACUUM`, `TRUNCATE`) up to [`KEYWORD_MAX`] letters; else (a number, a long or non-ASCII
/// word) `_OTHER`.
fn keyword(word: &str) -> Cow<'static, str> {
    if let Some(k) = KNOWN.iter().find(|k| k.eq_ignore_ascii_case(word)) {
        return Cow::Borrowed(*k);
    }
    if word.len() <= KEYWORD_MAX && word.bytes().all(|b| b.is_ascii_alphabetic() || b == b'_') {
        Cow::Owned(word.to_ascii_uppercase())
    } else {
        Cow::Borrowed("_OTHER")
    }
}

/// Reads `sql` by `backend`'s quoting rules. Never panics, allocates only for a keyword
/// outside [`KNOWN`] or a schema-qualified table.
pub(crate) fn summarize(sql: &str, backend: DbBackend) -> Summary<'_> {
    let mut it = tokens(sql, backend);
    let Some(first) = it.by_ref().find_map(|(_, t)| match t {
        Token::Word(w) => Some(w),
        _ => None,
    }) else {
        return Summary {
            operation: None,
            collection: None,
        };
    };
    let operation = keyword(first);
    // The word after which the table is named, at the statement's own level (not inside a
    // sub-select's parentheses).
    let after = match operation.as_ref() {
        "SELECT" | "DELETE" => "FROM",
        "INSERT" | "REPLACE" => "INTO",
        "UPDATE" => "",
        _ => {
            return Summary {
                operation: Some(operation),
                collection: None,
            };
        }
    };
    let mut depth = 0usize;
    let mut found = after.is_empty();
    let mut collection = None;
    while !found {
        match it.next() {
            None => break,
            Some((_, Token::Punct('('))) => depth += 1,
            Some((_, Token::Punct(')'))) => depth = depth.saturating_sub(1),
            Some((_, Token::Punct(';'))) => {
                // `SELECT WHERE false; COMMIT` (the guarded commit): a probe before the
                // transaction's end is named by the end (read without recursion: a text of
                // many statements costs one pass).
                let next = it.find_map(|(_, t)| match t {
                    Token::Word(w) => Some(keyword(w)),
                    _ => None,
                });
                if let Some(end) = next.filter(|op| matches!(op.as_ref(), "COMMIT" | "ROLLBACK")) {
                    return Summary {
                        operation: Some(end),
                        collection: None,
                    };
                }
                break;
            }
            Some((_, Token::Word(w))) if depth == 0 && w.eq_ignore_ascii_case(after) => {
                found = true;
            }
            Some(_) => {}
        }
    }
    if found {
        collection = name_at(sql, &mut it, backend).filter(|_| alone(&mut it));
    }
    Summary {
        operation: Some(operation),
        collection,
    }
}

/// Whether the table just read is the statement's only one: no `JOIN` and no `,` (an old-style
/// join) follows before the clauses that cannot name tables. OpenTelemetry's conventions ask
/// for no `db.collection.name` when the text names several.
fn alone(it: &mut crate::sql_text::Tokens<'_>) -> bool {
    let mut depth = 0usize;
    for (_, token) in it {
        match token {
            Token::Punct('(') => depth += 1,
            Token::Punct(')') => depth = depth.saturating_sub(1),
            Token::Punct(';') if depth == 0 => return true,
            Token::Punct(',') if depth == 0 => return false,
            Token::Word(w) if depth == 0 => {
                const ENDS: [&str; 10] = [
                    "WHERE",
                    "GROUP",
                    "ORDER",
                    "LIMIT",
                    "HAVING",
                    "RETURNING",
                    "VALUES",
                    "SET",
                    "ON",
                    "OFFSET",
                ];
                if w.eq_ignore_ascii_case("JOIN") {
                    return false;
                }
                if ENDS.iter().any(|e| e.eq_ignore_ascii_case(w)) {
                    return true;
                }
            }
            _ => {}
        }
    }
    true
}

/// A possibly qualified name (`a.b`, `"a"."b"`) from the next tokens, quotes taken off.
fn name_at<'a>(
    sql: &'a str,
    it: &mut crate::sql_text::Tokens<'a>,
    backend: DbBackend,
) -> Option<Cow<'a, str>> {
    let mut parts: Vec<&'a str> = Vec::new();
    loop {
        let (start, token) = it.next()?;
        let part = match token {
            // `UPDATE ONLY t`, `DELETE FROM ONLY t`: a keyword, not the table.
            Token::Word(w) if parts.is_empty() && w.eq_ignore_ascii_case("ONLY") => continue,
            Token::Word(w) => w,
            Token::Quoted => {
                let text = sql.get(start..it.end()).unwrap_or_default();
                let inner = text
                    .get(1..text.len().saturating_sub(1))
                    .unwrap_or_default();
                // Only a quoted name is a name: `"..."` (MySQL: a string), `` `...` ``, `[...]`;
                // a string literal ('...', $tag$...$tag$) never is, whatever the server says.
                let name_quote = match text.as_bytes().first() {
                    Some(b'"') => backend != DbBackend::MySql,
                    Some(b'`' | b'[') => true,
                    _ => false,
                };
                if !name_quote || inner.is_empty() {
                    return None;
                }
                inner
            }
            _ => return None,
        };
        parts.push(part);
        // A dot continues the name; anything else ends it.
        let mut peek = it.clone();
        match peek.next() {
            Some((_, Token::Punct('.'))) => {
                *it = peek;
            }
            _ => break,
        }
    }
    match parts.as_slice() {
        [one] => Some(Cow::Borrowed(*one)),
        [] => None,
        many => Some(Cow::Owned(many.join("."))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both(sql: &str) -> (Option<String>, Option<String>) {
        let s = summarize(sql, DbBackend::Postgres);
        (
            s.operation.map(|o| o.into_owned()),
            s.collection.map(|c| c.into_owned()),
        )
    }

    fn pair(op: &str, table: Option<&str>) -> (Option<String>, Option<String>) {
        (Some(op.to_owned()), table.map(str::to_owned))
    }

    #[test]
    fn seaorm_statements_name_their_table() {
        assert_eq!(
            both(
                r#"SELECT "accounts"."id", "accounts"."owner" FROM "accounts" WHERE "accounts"."id" = $1 LIMIT $2"#
            ),
            pair("SELECT", Some("accounts"))
        );
        assert_eq!(
            both(r#"INSERT INTO "transfers" ("from_id", "to_id") VALUES ($1, $2) RETURNING "id""#),
            pair("INSERT", Some("transfers"))
        );
        assert_eq!(
            both(r#"UPDATE "accounts" SET "balance_cents" = "balance_cents" - $1 WHERE "id" = $2"#),
            pair("UPDATE", Some("accounts"))
        );
        assert_eq!(
            both(r#"delete from "public"."accounts" where id = $1"#),
            pair("DELETE", Some("public.accounts"))
        );
    }

    #[test]
    fn sub_selects_and_strings_do_not_mislead() {
        assert_eq!(
            both("SELECT (SELECT 1 FROM inner_t) AS x FROM outer_t"),
            pair("SELECT", Some("outer_t"))
        );
        assert_eq!(both("SELECT 'FROM x' AS s"), pair("SELECT", None));
        assert_eq!(both("SELECT 1"), pair("SELECT", None));
        assert_eq!(both("UPDATE ONLY t SET a = 1"), pair("UPDATE", Some("t")));
        assert_eq!(both("SELECT * FROM $q$secret$q$"), pair("SELECT", None));
        let s = summarize(r#"INSERT INTO "secret" VALUES (1)"#, DbBackend::MySql);
        assert_eq!(s.collection, None);
    }

    #[test]
    fn several_tables_name_no_collection() {
        assert_eq!(
            both(
                r#"SELECT "a"."id" FROM "accounts" AS "a" LEFT JOIN "transfers" ON "a"."id" = "transfers"."from_id""#
            ),
            pair("SELECT", None)
        );
        assert_eq!(
            both("SELECT * FROM a, b WHERE a.id = b.id"),
            pair("SELECT", None)
        );
        assert_eq!(
            both("SELECT * FROM a WHERE id IN (SELECT x FROM b, c) ORDER BY p, q"),
            pair("SELECT", Some("a"))
        );
        assert_eq!(
            both(r#"UPDATE "accounts" SET "x" = 1 FROM "t" WHERE "id" = $1"#),
            pair("UPDATE", Some("accounts"))
        );
    }

    #[test]
    fn other_statements_keep_their_keyword_only() {
        assert_eq!(
            both("begin isolation level serializable"),
            pair("BEGIN", None)
        );
        assert_eq!(
            both("WITH x AS (SELECT 1) SELECT * FROM x"),
            pair("WITH", None)
        );
        assert_eq!(both("vacuum analyze t"), pair("VACUUM", None));
        assert_eq!(both("42"), pair("_OTHER", None));
        assert_eq!(both(&"x".repeat(100)), pair("_OTHER", None));
        assert_eq!(both("SELECT WHERE false; COMMIT"), pair("COMMIT", None));
        assert_eq!(
            both("SELECT WHERE false; COMMIT; SELECT pg_current_wal_lsn()"),
            pair("COMMIT", None)
        );
        assert_eq!(both("SELECT 1; SELECT 2 FROM t"), pair("SELECT", None));
        assert_eq!(both("  -- only a comment"), (None, None));
        assert_eq!(both(""), (None, None));
    }

    #[test]
    fn span_names_follow_the_conventions() {
        let s = summarize(r#"SELECT * FROM "accounts""#, DbBackend::Postgres);
        assert_eq!(s.span_name("postgresql"), "SELECT accounts");
        let s = summarize("COMMIT", DbBackend::Postgres);
        assert_eq!(s.span_name("postgresql"), "COMMIT");
        let s = summarize("", DbBackend::Postgres);
        assert_eq!(s.span_name("postgresql"), "postgresql");
    }

    #[test]
    fn mysql_backticks_and_unterminated_text_never_panic() {
        let s = summarize("SELECT * FROM `orders` WHERE id = ?", DbBackend::MySql);
        assert_eq!(s.collection.as_deref(), Some("orders"));
        for sql in [
            "SELECT * FROM \"",
            "SELECT * FROM",
            "INSERT INTO",
            "UPDATE",
            "SELECT * FROM ''",
        ] {
            let _ = summarize(sql, DbBackend::Postgres);
        }
    }
}
