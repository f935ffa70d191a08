//! What a statement may leave behind on its connection, judged from its text alone (no round
//! trip): whether it may end outside a transaction with the protocol drained (`suspect`), and
//! whether it may have changed the session the next caller would inherit (`tainted`).
//!
//! The rules err on the side of a reset: a statement is known to leave the session alone only
//! when every statement in it is a plain read or write (`SELECT`, `INSERT`, `UPDATE`,
//! `DELETE`, `WITH`, `VALUES`, `TABLE`, `SHOW`, `EXPLAIN`) that calls none of the built-in
//! functions that change a session, or transaction control that ends with its transaction
//! (`BEGIN`, `COMMIT`, `ROLLBACK`, `SAVEPOINT`, `RELEASE`, `SET LOCAL`, `SET TRANSACTION`).
//! SeaORM's generated statements are all of the first kind. What text cannot show (a function
//! of the application's own that calls `set_config(.., false)`) is not seen: see
//! CONNECTION_POOLING.md, "What a connection carries".

/// Whether a statement that completed outside a transaction leaves the connection outside
/// one, with nothing pending. SeaORM's own statements start with one of these words;
/// anything else (`BEGIN`, `SET`, `LOCK`, `PREPARE`, a block of several statements...) gets
/// the check before the connection is handed out again. A prepared statement is one statement
/// by protocol; only text sent as such (`single: false`) is scanned for more.
pub(super) fn leaves_transaction_state_alone(sql: &str, single: bool) -> bool {
    let word = first_word(sql);
    ["select", "insert", "update", "delete", "with", "values"]
        .iter()
        .any(|w| word.eq_ignore_ascii_case(w))
        && (single || !sql.trim_end().trim_end_matches(';').contains(';'))
}

/// Where a statement runs, as far as its effects go.
#[derive(Debug, Clone, Copy)]
pub(super) struct Context {
    /// PostgreSQL, where `SET LOCAL` and `SET TRANSACTION` end with their transaction. In MySQL
    /// `SET LOCAL` is `SET SESSION`, and `SET TRANSACTION` applies to the session's next
    /// transaction, whoever begins it.
    pub postgres: bool,
    /// Inside a transaction we began, whose `BEGIN` consumes a MySQL `SET TRANSACTION`.
    pub in_tx: bool,
}

/// Whether running `sql` may change what the next caller of this session would see.
/// `single`: sent as one statement by protocol (a `;` inside it is part of a literal).
pub(super) fn taints(sql: &str, single: bool, at: Context) -> bool {
    if single {
        return !part_is_clean(sql, at);
    }
    // A `;` inside a literal splits a statement into pieces that may each look unknown,
    // which only ever errs towards a reset; every real statement starts a piece.
    sql.split(';')
        .filter(|p| !p.trim().is_empty())
        .any(|p| !part_is_clean(p, at))
}

/// Whether `sql` may have dropped named statements, sqlx's included.
pub(super) fn drops_statements(sql: &str) -> bool {
    mentions(sql, "deallocate") || mentions(sql, "discard")
}

fn first_word(sql: &str) -> &str {
    sql.trim_start()
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("")
}

fn second_word(sql: &str) -> &str {
    let rest = sql.trim_start();
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_alphabetic());
    first_word(rest)
}

fn is_one_of(word: &str, words: &[&str]) -> bool {
    words.iter().any(|w| word.eq_ignore_ascii_case(w))
}

fn part_is_clean(part: &str, at: Context) -> bool {
    let word = first_word(part);
    if is_one_of(
        word,
        &[
            "select", "insert", "update", "delete", "with", "values", "table", "show", "explain",
        ],
    ) {
        !mentions_session_change(part)
    } else if is_one_of(
        word,
        &[
            "begin",
            "start",
            "commit",
            "end",
            "rollback",
            "abort",
            "savepoint",
            "release",
        ],
    ) {
        true
    } else if word.eq_ignore_ascii_case("set") {
        let second = second_word(part);
        if at.postgres {
            is_one_of(second, &["local", "transaction"])
        } else {
            at.in_tx && second.eq_ignore_ascii_case("transaction")
        }
    } else {
        false
    }
}

/// [`SESSION_CHANGING`] found in one pass over the text, whatever its case (this runs for
/// every statement; ordinary text has no candidate at all).
static SESSION_CHANGING_TEXT: std::sync::LazyLock<Option<aho_corasick::AhoCorasick>> =
    std::sync::LazyLock::new(|| {
        aho_corasick::AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(SESSION_CHANGING.iter().map(|(needle, _)| needle))
            .ok()
    });

/// Whether `part` mentions one of [`SESSION_CHANGING`] as such: a function called by that
/// name (not a column `"asset_config"` or a table `budget_lock`), or the words. Were the
/// automaton not built (it is built from a fixed list), every text counts, erring towards a
/// reset rather than a leak.
fn mentions_session_change(part: &str) -> bool {
    let Some(ac) = SESSION_CHANGING_TEXT.as_ref() else {
        return true;
    };
    // Ordinary text has no candidate at all: the automaton's prefilter says so fastest.
    if !ac.is_match(part) {
        return false;
    }
    let bytes = part.as_bytes();
    ac.find_overlapping_iter(part).any(|m| {
        let Some((_, kind)) = SESSION_CHANGING.get(m.pattern().as_usize()) else {
            return true;
        };
        let before = m.start().checked_sub(1).and_then(|i| bytes.get(i)).copied();
        let after = bytes.get(m.end()..).unwrap_or_default();
        let starts_word = before.is_none_or(|b| !is_ident(b) && b != b'"' && b != b'`');
        match kind {
            Needle::Call => {
                // The name may go on (`pg_advisory_lock_shared`), then `(`.
                let mut rest = after.iter().skip_while(|&&b| is_ident(b));
                starts_word && rest.find(|b| !b.is_ascii_whitespace()) == Some(&b'(')
            }
            Needle::Words => starts_word && after.first().is_none_or(|&b| !is_ident(b)),
            Needle::Anywhere => true,
        }
    })
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// How a [`SESSION_CHANGING`] needle must stand in the text to count.
#[derive(Debug, Clone, Copy)]
enum Needle {
    /// A function called by this name (or a longer one it begins).
    Call,
    /// These whole words.
    Words,
    /// Anywhere.
    Anywhere,
}

/// Text that marks a read or write as changing its session: PostgreSQL's `set_config` (with
/// `is_local` false it is a `SET`), session-level advisory locks (`pg_advisory_lock*`,
/// `pg_try_advisory_lock*`; the `_xact_` ones end with their transaction), `dblink_connect`,
/// `setseed`, an `UPDATE pg_settings`, `SELECT ... INTO TEMP`; MySQL's `GET_LOCK`, user
/// variables (`@v := ..`, `INTO @v`); SQLite's `load_extension`.
const SESSION_CHANGING: &[(&str, Needle)] = &[
    ("set_config", Needle::Call),
    ("pg_advisory_lock", Needle::Call),
    ("pg_try_advisory_lock", Needle::Call),
    ("dblink_connect", Needle::Call),
    ("setseed", Needle::Call),
    ("get_lock", Needle::Call),
    ("load_extension", Needle::Call),
    ("pg_settings", Needle::Words),
    ("into temp", Needle::Words),
    ("into temporary", Needle::Words),
    ("into local temp", Needle::Words),
    ("into local temporary", Needle::Words),
    ("into @", Needle::Anywhere),
    (":=", Needle::Anywhere),
];

/// Whether `haystack` contains `needle`, ignoring ASCII case, without allocating.
fn mentions(haystack: &str, needle: &str) -> bool {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    n.len() <= h.len() && h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PG: Context = Context {
        postgres: true,
        in_tx: false,
    };

    #[test]
    fn mysql_session_scoped_sets_are_caught() {
        let mysql = |in_tx| Context {
            postgres: false,
            in_tx,
        };
        assert!(taints("SET LOCAL sql_mode = ''", true, mysql(false)));
        assert!(taints(
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            true,
            mysql(false)
        ));
        assert!(!taints(
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            true,
            mysql(true)
        ));
        assert!(taints("SELECT GET_LOCK('l', 0)", true, mysql(false)));
        assert!(!taints("SELECT `budget_lock` FROM `t`", true, mysql(false)));
    }

    #[test]
    fn seaorm_statements_and_transaction_control_leave_the_session_alone() {
        for sql in [
            r#"SELECT "id", "name" FROM "account" WHERE "id" = $1 LIMIT $2"#,
            r#"INSERT INTO "account" ("name") VALUES ($1) RETURNING "id""#,
            r#"UPDATE "account" SET "balance" = $1 WHERE "account"."id" = $2"#,
            r#"DELETE FROM "account" WHERE "account"."id" = $1"#,
            "WITH t AS (SELECT 1) SELECT * FROM t",
            "SELECT pg_advisory_xact_lock(1)",
            r#"SELECT "asset_config", "budget_lock" FROM "settings_pg" WHERE "x" = $1"#,
            "INSERT INTO temperatures (v) VALUES (1)",
            "SELECT set_configuration FROM t",
        ] {
            assert!(!taints(sql, true, PG), "{sql}");
        }
        for sql in [
            "BEGIN; SET LOCAL statement_timeout = 500",
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE; BEGIN",
            "COMMIT",
            "SELECT; COMMIT; SELECT pg_current_wal_lsn()::text",
            "ROLLBACK TO SAVEPOINT dbservice_sp_1",
        ] {
            assert!(!taints(sql, false, PG), "{sql}");
        }
    }

    #[test]
    fn what_may_change_a_session_is_caught() {
        for sql in [
            "SET ROLE lowpriv",
            "set search_path to x",
            "SELECT set_config('role', 'lowpriv', false)",
            "SELECT pg_advisory_lock(42)",
            "select PG_TRY_ADVISORY_LOCK_SHARED(1)",
            "SELECT pg_catalog.set_config('role', 'x', false)",
            "SELECT set_config ('a.b', '1', false)",
            "UPDATE pg_settings SET setting = 'x' WHERE name = 'TimeZone'",
            "SELECT setseed(0.5)",
            "LISTEN c",
            "CREATE TEMP TABLE t (id int)",
            "PREPARE p AS SELECT 1",
            "SELECT 1 INTO TEMP t",
            "SELECT 1; SET ROLE x",
            "SELECT ';'; RESET ROLE",
            "/* hi */ SET ROLE x",
            "DO $$ BEGIN PERFORM set_config('a.b', '1', false); END $$",
            "SELECT GET_LOCK('l', 0)",
            "SELECT @x := 1",
        ] {
            assert!(taints(sql, false, PG), "{sql}");
        }
        assert!(drops_statements("DEALLOCATE ALL"));
        assert!(drops_statements("discard all"));
        assert!(!drops_statements("SELECT 1"));
    }
}
