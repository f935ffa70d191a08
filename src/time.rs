//! Timestamps in the RFC 3339 form the health-check draft uses.

pub(crate) mod rfc3339 {
    use std::time::SystemTime;

    use chrono::{DateTime, SecondsFormat, Utc};

    pub fn format(t: SystemTime) -> String {
        DateTime::<Utc>::from(t).to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    pub fn serialize<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*t))
    }
}

/// [`rfc3339`] for an optional timestamp (`null` when unset).
pub(crate) mod rfc3339_opt {
    use std::time::SystemTime;

    pub fn serialize<S: serde::Serializer>(
        t: &Option<SystemTime>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&super::rfc3339::format(*t)),
            None => s.serialize_none(),
        }
    }
}
