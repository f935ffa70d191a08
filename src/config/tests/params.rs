//! The parameter table against itself and against its documentation.

use std::time::Duration;

use super::*;

const GUIDE: &str = include_str!("../../../CONNECTION_POOLING.md");

#[test]
fn every_key_is_declared_once_and_parsed_by_its_entry() {
    let mut keys: Vec<&str> = POOL_KEYS.to_vec();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), POOL_KEYS.len(), "a key is declared twice");
    let params: Vec<&str> = PARAMS.iter().map(|p| p.key).collect();
    assert_eq!(params, POOL_KEYS);
}

#[test]
fn options_show_every_parameter_flat() {
    let pool = PoolOptions::default();
    let shown = serde_json::to_value(&pool).expect("serializes");
    let debug = format!("{pool:?}");
    for key in POOL_KEYS {
        assert!(
            shown.get(key).is_some(),
            "{key} not serialized flat: {shown}"
        );
        assert!(debug.contains(&format!(" {key}: ")), "{key} not in {debug}");
    }
    assert_eq!(shown.as_object().map(|o| o.len()), Some(POOL_KEYS.len()));
}

#[test]
fn the_guide_documents_every_parameter_and_its_group() {
    for key in POOL_KEYS {
        assert!(
            GUIDE.contains(&format!("\n| `{key}` |")),
            "CONNECTION_POOLING.md's parameter table lacks {key}"
        );
    }
    let groups = [
        ("limits", serde_json::to_value(PoolLimits::default())),
        ("deadlines", serde_json::to_value(Deadlines::default())),
        (
            "transactions",
            serde_json::to_value(TransactionDefaults::default()),
        ),
        ("monitoring", serde_json::to_value(Monitoring::default())),
        ("session", serde_json::to_value(Session::default())),
    ];
    for (group, fields) in groups {
        let fields = fields.expect("serializes");
        let fields: Vec<&String> = fields.as_object().expect("an object").keys().collect();
        let start = GUIDE
            .find(&format!("\n- `{group}`"))
            .unwrap_or_else(|| panic!("the guide does not list the group {group}"));
        let item = GUIDE
            .get(start + 1..)
            .and_then(|rest| rest.split("\n-").next())
            .and_then(|item| item.split("\n\n").next())
            .unwrap_or_default();
        let listed = item.matches('`').count() / 2 - 1;
        assert_eq!(listed, fields.len(), "the guide's {group} list: {item}");
        for field in fields {
            assert!(
                item.contains(&format!("`{field}`")),
                "{group} lacks {field}: {item}"
            );
        }
    }
}

#[test]
fn url_aliases_set_their_parameter() {
    let c = super::super::DbConfig::from_url(
        "postgres://u@h/db?statement-cache-capacity=7&socket_timeout=9",
    )
    .expect("valid");
    assert_eq!(c.pool().session.statement_cache_size, Some(7));
    assert_eq!(
        c.pool().deadlines.query_timeout,
        Some(Duration::from_secs(9))
    );
    assert_eq!(c.driver_url(), "postgres://u@h/db");
}
