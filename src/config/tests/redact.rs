//! Unit tests of `config::redact` (kept in `tests/` beside the code).

use super::*;

fn url(s: &str) -> Url {
    Url::parse(s).expect("test URL parses")
}

#[test]
fn masks_userinfo_password_and_query_password() {
    let u = url("postgres://app:s%40cret@db:5432/x?password=qq&sslmode=require");
    let shown = RedactedUrl::new(&u).to_string();
    assert_eq!(
        shown,
        "postgres://app:***@db:5432/x?password=***&sslmode=require"
    );
    assert!(!format!("{:?}", RedactedUrl::new(&u)).contains("cret"));
}

#[test]
fn scrub_removes_raw_and_decoded_password() {
    let u = url("postgres://app:s%40cret@db/x");
    let secrets = secrets_of(&u, u.as_str(), None);
    let text = format!("failed for '{}' with s@cret and s%40cret", u.as_str());
    let clean = scrub(&text, &secrets);
    assert!(!clean.contains("cret"), "{clean}");
}

#[test]
fn scrub_removes_the_environment_password_too() {
    let u = url("postgres://app@db/x");
    let secrets = secrets_of(&u, u.as_str(), Some("env-pw-123"));
    let clean = scrub("password authentication failed: env-pw-123", &secrets);
    assert!(!clean.contains("env-pw-123"), "{clean}");
}
