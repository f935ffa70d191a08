//! The passfile: libpq's format and matching, its strict and lenient readings, and its
//! permission rule.

use super::*;

/// A strict parse of `text`, as a named passfile.
fn parse(text: &str) -> Result<Passfile, SecretError> {
    let file = named("passfile", Path::new("/x/.pgpass"));
    pgpass::passfile(&file, text.as_bytes(), false, &mut Vec::new())
}

/// The password `text`'s lines give `req`.
fn find(text: &str, req: &CredentialsRequest<'_>) -> Option<String> {
    parse(text).expect("valid").lookup(req).map(str::to_owned)
}

/// Secrets with a named passfile and `PGPASSWORD`.
fn with_passfile(path: &Path) -> Result<Secrets, SecretError> {
    Secrets::open(CredentialSources {
        passfile: Some(named("passfile", path)),
        env_password: Some(("PGPASSWORD", String::from("from-env"))),
        ..CredentialSources::default()
    })
}

#[test]
fn wildcards_match_anything_and_the_first_match_wins() {
    let text = "# a comment: with colons\n\n*:*:*:app:first\ndb.example:5432:app:app:second\n";
    assert_eq!(find(text, &db()).as_deref(), Some("first"));
    assert_eq!(
        find(text, &request("other", 1, None, "app")).as_deref(),
        Some("first")
    );
    assert_eq!(find(text, &request("db.example", 5432, None, "bob")), None);
}

#[test]
fn each_host_and_port_has_its_own_line() {
    let text = "a.example:5432:*:app:on-a\nb.example:5432:*:app:on-b\nb.example:6432:*:app:on-b-bouncer\r\n";
    assert_eq!(
        find(text, &request("a.example", 5432, None, "app")).as_deref(),
        Some("on-a")
    );
    assert_eq!(
        find(text, &request("b.example", 5432, None, "app")).as_deref(),
        Some("on-b")
    );
    assert_eq!(
        find(text, &request("b.example", 6432, None, "app")).as_deref(),
        Some("on-b-bouncer")
    );
    assert_eq!(find(text, &request("c.example", 5432, None, "app")), None);
}

#[test]
fn the_database_defaults_to_the_user_name() {
    let text = "*:*:app:app:same-name\n*:*:*:app:any\n";
    assert_eq!(
        find(text, &request("h", 1, None, "app")).as_deref(),
        Some("same-name")
    );
    assert_eq!(
        find(text, &request("h", 1, Some("other"), "app")).as_deref(),
        Some("any")
    );
}

#[test]
fn escapes_are_undone_in_every_field() {
    let text = "h\\:x:*:d\\\\b:*:pa\\:ss\\\\word:ignored\n*:*:*:*:\\*\n";
    assert_eq!(
        find(text, &request("h:x", 1, Some("d\\b"), "u")).as_deref(),
        Some("pa:ss\\word")
    );
    // An escaped star is a literal star; a star password is the password `*`.
    assert_eq!(
        find(text, &request("h", 1, None, "u")).as_deref(),
        Some("*")
    );
    assert_eq!(find("\\*:*:*:*:p\n", &request("h", 1, None, "u")), None);
    assert_eq!(
        find("\\*:*:*:*:p\n", &request("*", 1, None, "u")).as_deref(),
        Some("p")
    );
}

#[test]
fn a_socket_directory_matches_localhost_and_itself() {
    let text = "localhost:5432:*:*:local\n/run/pg:5433:*:*:by-dir\n";
    assert_eq!(
        find(text, &request("/run/postgresql", 5432, None, "u")).as_deref(),
        Some("local")
    );
    assert_eq!(
        find(text, &request("", 5432, None, "u")).as_deref(),
        Some("local")
    );
    assert_eq!(
        find(text, &request("/run/pg", 5433, None, "u")).as_deref(),
        Some("by-dir")
    );
    assert_eq!(find(text, &request("db.example", 5432, None, "u")), None);
}

#[test]
fn an_empty_password_ends_the_search_without_one() {
    assert_eq!(find("*:*:*:*:\n*:*:*:*:later\n", &db()), None);
}

#[test]
fn a_malformed_line_is_named_by_number_never_by_text() {
    let err = parse("# ok\n*:*:*:*:fine\nhost:5432:db:hunter2secret\n")
        .err()
        .expect("malformed");
    let SecretError::Malformed {
        line, ref reason, ..
    } = err
    else {
        panic!("{err:?}");
    };
    assert_eq!(line, 3);
    assert_eq!(reason, "expected hostname:port:database:username:password");
    assert_eq!(
        err.to_string(),
        "passfile /x/.pgpass line 3: expected hostname:port:database:username:password"
    );
    assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
}

#[tokio::test]
async fn a_named_passfile_is_read_and_falls_through_when_no_line_matches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("pgpass");
    write(&path, "db.example:5432:*:app:from-file\n", 0o600);
    let secrets = with_passfile(&path).expect("open");
    let resolved = secrets
        .resolve(&db(), false, false, BOUND)
        .await
        .expect("resolve");
    assert_eq!(resolved.password.as_deref(), Some("from-file"));
    assert_eq!(
        resolved.source,
        Some(format!("passfile {}", path.display()))
    );
    assert!(resolved.rereadable);
    let other = request("elsewhere", 5432, None, "app");
    let resolved = secrets
        .resolve(&other, false, false, BOUND)
        .await
        .expect("resolve");
    assert_eq!(resolved.password.as_deref(), Some("from-env"));
    assert_eq!(resolved.source.as_deref(), Some("PGPASSWORD"));
    assert!(!resolved.rereadable);
    let err = with_passfile(&dir.path().join("absent")).expect_err("missing");
    assert!(err.to_string().starts_with("passfile "), "{err}");
    write(&path, "nope-hunter2\n", 0o600);
    let err = with_passfile(&path).expect_err("malformed");
    assert!(!format!("{err} {err:?}").contains("hunter2"));
}

#[tokio::test]
async fn a_passfile_others_may_read_is_ignored_with_a_warning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("pgpass");
    write(&path, "*:*:*:*:from-file\n", 0o644);
    let (logs, _guard) = capture();
    let secrets = with_passfile(&path).expect("open");
    assert_eq!(
        password(&secrets, &db(), false).await.as_deref(),
        Some("from-env")
    );
    assert_eq!(
        password(&secrets, &db(), true).await.as_deref(),
        Some("from-env")
    );
    let text = logged(&logs);
    assert_eq!(text.matches("group or world access").count(), 1, "{text}");
    assert!(
        text.contains("0644") && text.contains(&path.display().to_string()),
        "{text}"
    );
    // Tightened, it is read; loosened again, its last good content stays.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    assert_eq!(
        password(&secrets, &db(), false).await.as_deref(),
        Some("from-file")
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    assert_eq!(
        password(&secrets, &db(), false).await.as_deref(),
        Some("from-file")
    );
    assert!(logged(&logs).contains("keeping its last good content"));
    assert!(!logged(&logs).contains("from-file"));
}

#[tokio::test]
async fn the_default_passfile_is_lenient() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(".pgpass");
    let sources = CredentialSources {
        default_passfile: Some(named("~/.pgpass", &path)),
        ..CredentialSources::default()
    };
    let (logs, _guard) = capture();
    let secrets = Secrets::open(sources.clone()).expect("absent is fine");
    assert_eq!(password(&secrets, &db(), false).await, None);
    assert!(logged(&logs).is_empty(), "{}", logged(&logs));
    write(&path, "broken-hunter2\n*:*:*:*:good\n", 0o600);
    let secrets = Secrets::open(sources).expect("malformed lines are skipped");
    assert_eq!(
        password(&secrets, &db(), false).await.as_deref(),
        Some("good")
    );
    assert_eq!(
        password(&secrets, &db(), true).await.as_deref(),
        Some("good")
    );
    let text = logged(&logs);
    assert_eq!(text.matches("line 1").count(), 1, "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}
