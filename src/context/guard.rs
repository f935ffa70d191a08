//! What the text of work that carries a context may not hold: statements that begin or end a
//! transaction (what followed them would run without the context) and, behind PgBouncer,
//! changes of a setting for the whole session (nothing resets a server session between
//! PgBouncer's clients). Read from the text, as the server's lexer would read it.

use sea_orm::DbErr;

/// Refuses `sql` as work that carries a context: text that begins or ends a transaction
/// (`in_transaction`: it runs inside a transaction of ours, where `ROLLBACK TO` a savepoint is
/// fine) and, behind PgBouncer (`pgbouncer`), a change of a setting beyond its transaction (a
/// plain `SET`, `RESET`, `set_config(.., false)`), which would reach other clients with their
/// own context or none. Elsewhere the pool's session reset undoes such a change.
pub(crate) fn check_text(sql: &str, in_transaction: bool, pgbouncer: bool) -> Result<(), DbErr> {
    if let Some(word) = transaction_control(sql, in_transaction) {
        return Err(DbErr::Custom(if in_transaction {
            format!(
                "this transaction carries a session context, and this text holds `{word}`: \
                 the statements after it would run outside the transaction, without the \
                 context; end the transaction by returning from its body (or commit())"
            )
        } else {
            format!(
                "db.with_context(..) runs each statement in a transaction of its own that \
                 carries the context, and this text holds `{word}`: statements after it would \
                 run without the context; use .transaction(..) on the context's executor instead"
            )
        }));
    }
    // Only behind PgBouncer: elsewhere the reset undoes it, and the text is not read at all.
    match pgbouncer.then(|| session_setting_change(sql)).flatten() {
        Some(what) => Err(DbErr::Custom(format!(
            "pgbouncer=true: `{what}` would change the server session beyond this transaction, \
             and PgBouncer hands that session to other clients with nothing to reset it; work \
             that carries a session context may change settings only for its transaction \
             (SET LOCAL, set_config(.., true))"
        ))),
        None => Ok(()),
    }
}

/// The words of the first statement in `sql` that begins or ends a transaction (`BEGIN`,
/// `COMMIT`, `PREPARE TRANSACTION`, ...): in text run with a context, the statements after it
/// would run without the context. `inside`: the text runs inside a transaction of ours, where
/// `ROLLBACK TO` a savepoint keeps the transaction (and its context).
fn transaction_control(sql: &str, inside: bool) -> Option<String> {
    use crate::sql_text::Token;
    // `COMMIT PREPARED` and `ROLLBACK PREPARED` are found by their first word.
    const WORDS: [&str; 6] = ["BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT"];
    // One statement (every statement SeaORM builds): only its first two words matter.
    let one = !sql.contains(';');
    let mut tokens = crate::sql_text::tokens(sql, sea_orm::DbBackend::Postgres)
        .map(|(_, t)| t)
        .peekable();
    let mut at_start = true;
    while let Some(token) = tokens.next() {
        let start = std::mem::replace(&mut at_start, token == Token::Punct(';'));
        let Token::Word(w) = token else {
            continue;
        };
        if !start {
            if one {
                return None;
            }
            continue;
        }
        let next = match tokens.peek() {
            Some(Token::Word(n)) => n.to_ascii_uppercase(),
            _ => String::new(),
        };
        let word = w.to_ascii_uppercase();
        let ends = match word.as_str() {
            "ROLLBACK" => !(inside && next == "TO"),
            "PREPARE" => next == "TRANSACTION",
            w => WORDS.contains(&w),
        };
        if ends {
            return Some(if word == "PREPARE" {
                "PREPARE TRANSACTION".to_owned()
            } else {
                word
            });
        }
        if one {
            return None;
        }
    }
    None
}

/// What in `sql` would change a setting for the rest of the session rather than for its
/// transaction: a `SET` that is not `SET LOCAL`/`SET TRANSACTION`/`SET CONSTRAINTS`, a
/// `RESET`, a `set_config(..)` whose third argument is not the word `true`, an
/// `UPDATE pg_settings`. Best effort, from the text: a function that calls `set_config`, a
/// `DO` block or a quoted function name are not seen.
/// Behind PgBouncer (`pgbouncer=true`) nothing resets a server session between its clients,
/// so such a change made with a context would outlive it and reach other clients.
fn session_setting_change(sql: &str) -> Option<&'static str> {
    use crate::sql_text::Token;
    let tokens: Vec<Token<'_>> = crate::sql_text::tokens(sql, sea_orm::DbBackend::Postgres)
        .map(|(_, t)| t)
        .collect();
    let word = |i: usize| match tokens.get(i) {
        Some(Token::Word(w)) => Some(*w),
        _ => None,
    };
    let is = |i: usize, w: &str| word(i).is_some_and(|x| x.eq_ignore_ascii_case(w));
    let mut at_start = true;
    for i in 0..tokens.len() {
        let start = std::mem::replace(&mut at_start, tokens.get(i) == Some(&Token::Punct(';')));
        // `SET CONSTRAINTS` too lasts for its transaction only.
        if start
            && is(i, "SET")
            && !(is(i + 1, "LOCAL") || is(i + 1, "TRANSACTION") || is(i + 1, "CONSTRAINTS"))
        {
            return Some("SET");
        }
        if start && is(i, "RESET") {
            return Some("RESET");
        }
        // `UPDATE [pg_catalog.]pg_settings SET ...` is a SET; reading it is not.
        if is(i, "UPDATE")
            && (is(i + 1, "pg_settings")
                || (is(i + 1, "pg_catalog")
                    && tokens.get(i + 2) == Some(&Token::Punct('.'))
                    && is(i + 3, "pg_settings")))
        {
            return Some("UPDATE pg_settings");
        }
        if is(i, "set_config")
            && tokens.get(i + 1) == Some(&Token::Punct('('))
            && !third_argument_is_true(tokens.get(i + 2..).unwrap_or_default())
        {
            return Some("set_config");
        }
    }
    None
}

/// Whether the arguments after `set_config(` end `, true)` at their own depth.
fn third_argument_is_true(args: &[crate::sql_text::Token<'_>]) -> bool {
    use crate::sql_text::Token;
    let (mut depth, mut commas) = (0usize, 0usize);
    let mut third: Vec<&Token<'_>> = Vec::new();
    for t in args {
        match t {
            Token::Punct('(') => depth += 1,
            Token::Punct(')') if depth == 0 => break,
            Token::Punct(')') => depth -= 1,
            Token::Punct(',') if depth == 0 => {
                commas += 1;
                continue;
            }
            _ => {}
        }
        if commas == 2 {
            third.push(t);
        }
    }
    matches!(third.as_slice(), [Token::Word(w)] if w.eq_ignore_ascii_case("true"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_level_setting_changes_are_found() {
        for (sql, word) in [
            ("SET app.tenant_id = '1'", "SET"),
            ("set session app.tenant_id to 1", "SET"),
            ("SELECT 1; SET ROLE other", "SET"),
            ("RESET ALL", "RESET"),
            (
                "SELECT set_config('app.tenant_id', '1', false)",
                "set_config",
            ),
            ("SELECT set_config('app.t', $1, $2)", "set_config"),
            (
                "SELECT pg_catalog.set_config('a.b', f('x', 'y'), false)",
                "set_config",
            ),
            (
                "UPDATE pg_settings SET setting = '1' WHERE name = 'x'",
                "UPDATE pg_settings",
            ),
            (
                "update pg_catalog.pg_settings set setting = '1'",
                "UPDATE pg_settings",
            ),
        ] {
            assert_eq!(session_setting_change(sql), Some(word), "{sql}");
        }
        for sql in [
            "SET LOCAL app.tenant_id = '1'",
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            "SELECT set_config('app.t', f('a', 'b'), true)",
            "UPDATE t SET a = 1",
            "SELECT 'SET x = 1; RESET ALL'",
            "SELECT reset FROM t",
            "SET CONSTRAINTS ALL DEFERRED",
            "SELECT setting FROM pg_settings WHERE name = 'work_mem'",
        ] {
            assert_eq!(session_setting_change(sql), None, "{sql}");
        }
    }

    #[test]
    fn transaction_control_is_found_at_statement_starts_only() {
        for inside in [false, true] {
            assert_eq!(
                transaction_control("UPDATE t SET a = 1; COMMIT; SELECT 1", inside),
                Some("COMMIT".into())
            );
            assert_eq!(transaction_control("begin", inside), Some("BEGIN".into()));
            assert_eq!(
                transaction_control("SELECT 1; PREPARE TRANSACTION 'x'", inside),
                Some("PREPARE TRANSACTION".into())
            );
            assert_eq!(
                transaction_control("ROLLBACK", inside),
                Some("ROLLBACK".into())
            );
            assert_eq!(transaction_control("SELECT 'COMMIT; BEGIN'", inside), None);
            assert_eq!(
                transaction_control("SELECT a AS begin FROM t", inside),
                None
            );
            assert_eq!(transaction_control("SELECT 1 /* ; commit */", inside), None);
            assert_eq!(transaction_control("PREPARE q AS SELECT 1", inside), None);
            assert_eq!(transaction_control("SAVEPOINT s; RELEASE s", inside), None);
        }
        assert_eq!(
            transaction_control("ROLLBACK TO SAVEPOINT s", false),
            Some("ROLLBACK".into())
        );
        assert_eq!(transaction_control("ROLLBACK TO SAVEPOINT s", true), None);
    }
}
