//! Unit tests of `sql_text` (kept beside the code).

use super::*;

use Token::{Param, Punct, Quoted, Word};

fn toks(sql: &str, backend: DbBackend) -> Vec<Token<'_>> {
    tokens(sql, backend).map(|(_, t)| t).collect()
}

const ALL: [DbBackend; 3] = [DbBackend::Postgres, DbBackend::MySql, DbBackend::Sqlite];

#[test]
fn words_punctuation_and_offsets() {
    for backend in ALL {
        assert_eq!(
            tokens("SELECT a_1,  é(x);", backend).collect::<Vec<_>>(),
            vec![
                (0, Word("SELECT")),
                (7, Word("a_1")),
                (10, Punct(',')),
                (13, Word("é")),
                (15, Punct('(')),
                (16, Word("x")),
                (17, Punct(')')),
                (18, Punct(';')),
            ]
        );
        assert_eq!(toks("", backend), vec![]);
        assert_eq!(toks(" \t\n", backend), vec![]);
    }
}

#[test]
fn quotes_in_every_dialect() {
    for backend in ALL {
        // A doubled quote stays inside; `--` comments run to the end of the line.
        assert_eq!(
            toks("'a''b' x \"c\"\"d\" y -- z ; w\nv", backend),
            vec![Quoted, Word("x"), Quoted, Word("y"), Word("v")],
            "{backend:?}"
        );
        // A comment ends at its `*/`, and a line comment at the end of the text.
        assert_eq!(toks("a /* b */ c --", backend), vec![Word("a"), Word("c")]);
    }
}

#[test]
fn postgres_rules() {
    let pg = DbBackend::Postgres;
    // Only E'' strings take backslash escapes.
    assert_eq!(
        toks("E'\\'' x e'\\\\' y", pg),
        vec![Word("E"), Quoted, Word("x"), Word("e"), Quoted, Word("y")]
    );
    assert_eq!(
        toks("'\\' x '", pg),
        vec![Quoted, Word("x"), Quoted],
        "a plain string ends at the quote after its backslash"
    );
    // An escape string goes on in a quote after a line break (comments allowed), still
    // taking escapes: the `$1` and `;` below are inside it, as the server reads it.
    for sql in [
        "SELECT E'a'\n'\\', $1 ; x'",
        "SELECT E'a' -- c\n  '\\', $1 ; x'",
        "SELECT E'a'\r\n\n\t'\\', $1 ; x'",
    ] {
        assert_eq!(
            toks(sql, pg),
            vec![Word("SELECT"), Word("E"), Quoted],
            "{sql:?}"
        );
    }
    // Without a line break, or for a plain string, the next quote is a string of its own.
    assert_eq!(
        toks("SELECT E'a' '\\', $1", pg),
        vec![
            Word("SELECT"),
            Word("E"),
            Quoted,
            Quoted,
            Punct(','),
            Param("1")
        ]
    );
    // `xE'` and `a$E'` are not E strings: the word is not `E`.
    assert_eq!(toks("xE'\\' y", pg), vec![Word("xE"), Quoted, Word("y")]);
    assert_eq!(toks("a$E'\\' y", pg), vec![Word("a$E"), Quoted, Word("y")]);
    // No backslash escapes in quoted names; no backtick or bracket names.
    assert_eq!(toks("\"\\\" x", pg), vec![Quoted, Word("x")]);
    assert_eq!(
        toks("`a` [b]", pg),
        vec![
            Punct('`'),
            Word("a"),
            Punct('`'),
            Punct('['),
            Word("b"),
            Punct(']')
        ]
    );
    // Nested comments; `#` is an operator.
    assert_eq!(
        toks("a /* /* */ b */ c # d", pg),
        vec![Word("a"), Word("c"), Punct('#'), Word("d")]
    );
    // Dollar quotes, with or without a tag; the tag must match.
    assert_eq!(
        toks("$$ ; $x$ $$ x $a$ ; $b$ ; $a$ y", pg),
        vec![Quoted, Word("x"), Quoted, Word("y")]
    );
    assert_eq!(toks("$é_1$ ' $é_1$ z", pg), vec![Quoted, Word("z")]);
    // Parameters, and `$` inside words.
    assert_eq!(
        tokens("$1, a$1, $23::t, $0", pg).collect::<Vec<_>>(),
        vec![
            (0, Param("1")),
            (2, Punct(',')),
            (4, Word("a$1")),
            (7, Punct(',')),
            (9, Param("23")),
            (12, Punct(':')),
            (13, Punct(':')),
            (14, Word("t")),
            (15, Punct(',')),
            (17, Param("0")),
        ]
    );
    // A `$` that opens nothing: a digit after it, or a word before it.
    assert_eq!(
        toks("$1$a$ ;", pg),
        vec![Param("1"), Punct('$'), Word("a$"), Punct(';')]
    );
    assert_eq!(toks("$ $", pg), vec![Punct('$'), Punct('$')]);
}

#[test]
fn mysql_rules() {
    let my = DbBackend::MySql;
    // Backslash escapes in both kinds of string; backtick names with doubled backticks.
    assert_eq!(
        toks("'\\'' a \"\\\"\" b `x``y` c", my),
        vec![Quoted, Word("a"), Quoted, Word("b"), Quoted, Word("c")]
    );
    // `#` comments; `-- ` needs a space or control character after it; no nesting.
    assert_eq!(
        toks("a # b\nc -- d\ne --\tf\ng --h", my),
        vec![
            Word("a"),
            Word("c"),
            Word("e"),
            Word("g"),
            Punct('-'),
            Punct('-'),
            Word("h")
        ]
    );
    assert_eq!(
        toks("a /* /* */ b */", my),
        vec![Word("a"), Word("b"), Punct('*'), Punct('/')]
    );
    // No dollar quotes, parameters or brackets.
    assert_eq!(
        toks("$$ a $1 [b]", my),
        vec![
            Punct('$'),
            Punct('$'),
            Word("a"),
            Punct('$'),
            Word("1"),
            Punct('['),
            Word("b"),
            Punct(']')
        ]
    );
}

#[test]
fn sqlite_rules() {
    let lite = DbBackend::Sqlite;
    assert_eq!(
        toks("[a ' b] `c`` ' d` e '\\' f \"\\\" g", lite),
        vec![
            Quoted,
            Quoted,
            Word("e"),
            Quoted,
            Word("f"),
            Quoted,
            Word("g")
        ]
    );
    assert_eq!(toks("E'\\' x", lite), vec![Word("E"), Quoted, Word("x")]);
    assert_eq!(
        toks("a /* /* */ b */ # c", lite),
        vec![
            Word("a"),
            Word("b"),
            Punct('*'),
            Punct('/'),
            Punct('#'),
            Word("c")
        ]
    );
    assert_eq!(
        toks("$a $1", lite),
        vec![Punct('$'), Word("a"), Punct('$'), Word("1")]
    );
}

#[test]
fn unterminated_quotes_and_comments_end_the_text() {
    for backend in ALL {
        for (sql, quoted) in [
            ("a 'b ; c", true),
            ("a \"b ; c", true),
            ("a '", true),
            ("a /* b ; c", false),
            ("a /* b */ /* ; c", false),
            ("a -- b ; c", false),
        ] {
            let want = if quoted {
                vec![Word("a"), Quoted]
            } else {
                vec![Word("a")]
            };
            assert_eq!(toks(sql, backend), want, "{backend:?}: {sql}");
        }
        assert_eq!(toks("a E'b\\", backend), vec![Word("a"), Word("E"), Quoted]);
    }
    let pg = DbBackend::Postgres;
    assert_eq!(toks("a /* /* */ ; c", pg), vec![Word("a")]);
    assert_eq!(toks("a $x$ ; $y$ c", pg), vec![Word("a"), Quoted]);
    assert_eq!(toks("a E'\\' ; c", pg), vec![Word("a"), Word("E"), Quoted]);
    assert_eq!(toks("a [b ; c", DbBackend::Sqlite), vec![Word("a"), Quoted]);
    assert_eq!(toks("a `b ; c", DbBackend::MySql), vec![Word("a"), Quoted]);
    assert_eq!(
        toks("a 'b\\' ; c", DbBackend::MySql),
        vec![Word("a"), Quoted]
    );
}

/// Every token's offset is a character boundary inside the text, offsets only grow, and
/// a word or parameter is the text at its offset.
fn check_well_formed(sql: &str, backend: DbBackend) {
    let mut last = None;
    for (at, token) in tokens(sql, backend) {
        assert!(sql.is_char_boundary(at) && at < sql.len(), "{sql:?} @{at}");
        assert!(last.is_none_or(|l| l < at), "{sql:?} @{at}");
        last = Some(at);
        match token {
            Word(w) => assert_eq!(sql.get(at..at + w.len()), Some(w), "{sql:?}"),
            Param(d) => assert_eq!(sql.get(at + 1..at + 1 + d.len()), Some(d), "{sql:?}"),
            Punct(c) => assert_eq!(sql.get(at..).and_then(|s| s.chars().next()), Some(c)),
            Quoted => {}
        }
    }
}

#[test]
fn never_panics_on_any_text() {
    let edges = [
        "",
        "$",
        "E",
        "'",
        "e'",
        "E'",
        "E'\\",
        "'\\",
        "\"",
        "`",
        "[",
        "]",
        "#",
        "-",
        "--",
        "/",
        "/*",
        "/*/",
        "*/",
        "$$",
        "$1",
        "$a",
        "$a$",
        "$é",
        "é",
        "\\",
        "a$",
        "1$",
        "$0",
        "$99999999999999999999999",
        "/* /*",
        "\u{0}",
        "🦀",
        "ß'",
        "€$€$",
        "\n",
    ];
    // Every edge alone and after a prefix, then pairs, then pseudo-random strings over an
    // alphabet of the characters the scanner cares about.
    let mut texts: Vec<String> = Vec::new();
    for a in edges {
        texts.push(a.to_owned());
        for b in edges {
            texts.push(format!("{a}{b}"));
            texts.push(format!("SELECT {a} x{b}"));
        }
    }
    let alphabet = [
        "'", "\"", "`", "[", "]", "$", "E", "e", "\\", "-", "/", "*", "#", "\n", " ", "a", "1",
        "_", ";", "é", "🦀", "€", "x$",
    ];
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..5000 {
        let mut s = String::new();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = seed % 24;
        for _ in 0..len {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let k = usize::try_from(seed % alphabet.len() as u64).unwrap_or_default();
            s.push_str(alphabet.get(k).copied().unwrap_or_default());
        }
        texts.push(s);
    }
    for text in &texts {
        for backend in ALL {
            check_well_formed(text, backend);
        }
    }
}
