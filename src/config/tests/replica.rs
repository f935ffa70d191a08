//! Unit tests of `config::replica` (kept in `tests/` beside the code).

use super::*;

#[test]
fn splits_on_whitespace_and_on_commas_before_a_scheme() {
    assert_eq!(
        split_urls("postgres://a/x,postgres://b/x  postgresql://c/x,\n postgres://d/x,"),
        [
            "postgres://a/x",
            "postgres://b/x",
            "postgresql://c/x",
            "postgres://d/x"
        ]
    );
    assert_eq!(
        split_urls(
            "postgres://u@r1:5432,r2:5432/app?target_session_attrs=standby,\
             postgres://u@/app?host=r3,r4&port=1,2"
        ),
        [
            "postgres://u@r1:5432,r2:5432/app?target_session_attrs=standby",
            "postgres://u@/app?host=r3,r4&port=1,2"
        ]
    );
    assert!(split_urls(" , ").is_empty());
}

#[test]
fn multi_host_replicas_parse() {
    let r = ReplicaConfig::from_urls(
        "postgres://u:pw@r1:5432,r2:5433/app?target_session_attrs=prefer-standby, \
         postgres://u:pw@r3/app?target_session_attrs=standby&connection_limit=2",
        &[],
    )
    .expect("valid");
    assert_eq!(r.len(), 2);
    assert_eq!(r.replicas[0].hosts().len(), 2);
    assert_eq!(
        r.replicas[0].pool().session.target_session_attrs,
        crate::config::TargetSessionAttrs::PreferStandby
    );
    assert_eq!(
        r.replicas[0].redacted_url().to_string(),
        "postgres://u:***@r1:5432,r2:5433/app"
    );
    assert_eq!(r.replicas[1].hosts().len(), 1);
}

#[test]
fn single_host_lists_split_as_before() {
    let r = ReplicaConfig::from_urls("postgres://u@a/x,postgres://u@b/x postgres://u@c/x", &[])
        .expect("valid");
    assert_eq!(r.len(), 3);
    let err = ReplicaConfig::from_urls(" ,", &[]).expect_err("empty");
    assert!(err.to_string().contains("DATABASE_REPLICA_URLS"), "{err}");
    let err = ReplicaConfig::from_urls("postgres://u@a/x,postgres://u:s3cr@b,,c/x", &[])
        .expect_err("bad host list");
    assert_eq!(
        err.to_string(),
        "replica 2 in DATABASE_REPLICA_URLS: DATABASE_URL host 2 of 3: the host name is empty \
         (two commas in a row, or one at an end?)"
    );
}
