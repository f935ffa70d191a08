//! Unit tests of `config::duration` (kept in `tests/` beside the code).

use super::*;

#[test]
fn bare_numbers_are_seconds() {
    assert_eq!(parse_duration("p", "5"), Ok(Duration::from_secs(5)));
    assert_eq!(parse_duration("p", "0.25"), Ok(Duration::from_millis(250)));
}

#[test]
fn units_are_accepted() {
    assert_eq!(parse_duration("p", "500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("p", "2s"), Ok(Duration::from_secs(2)));
    assert_eq!(parse_duration("p", "1m"), Ok(Duration::from_secs(60)));
    assert_eq!(parse_duration("p", "1h 30m"), Ok(Duration::from_secs(5400)));
}

#[test]
fn garbage_names_parameter_and_value() {
    let err = parse_duration("pool_timeout", "abc").expect_err("abc is not a duration");
    let msg = err.to_string();
    assert!(
        msg.contains("pool_timeout") && msg.contains("`abc`"),
        "{msg}"
    );
    assert!(parse_duration("p", "-1").is_err());
    assert!(parse_duration("p", "").is_err());
    assert!(parse_duration("p", "1.2.3").is_err());
}

#[test]
fn zero_means_none_for_optional() {
    assert_eq!(parse_optional_duration("p", "0"), Ok(None));
    assert_eq!(parse_optional_duration("p", "0s"), Ok(None));
    assert_eq!(
        parse_optional_duration("p", "3"),
        Ok(Some(Duration::from_secs(3)))
    );
}

#[test]
fn durations_above_the_maximum_are_rejected_by_name() {
    for value in [
        "18446744073709551615s",
        "18446744073709551615",
        "366days",
        "1e30",
    ] {
        let err = parse_duration("ping_timeout", value).expect_err(value);
        let msg = err.to_string();
        assert!(msg.contains("ping_timeout") && msg.contains(value), "{msg}");
    }
    assert_eq!(parse_duration("p", "365days"), Ok(MAX_DURATION));
}
