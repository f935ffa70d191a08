//! One value of a setting as the layers read it, before it is parsed.

use serde::Deserialize;

/// A scalar from any source: TOML keeps numbers and booleans typed, the environment does not.
/// Tables appear only under `pools` (`[pools.<name>]`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum Scalar {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Table(std::collections::BTreeMap<String, Scalar>),
}

impl std::fmt::Display for Scalar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scalar::Text(s) => f.write_str(s),
            Scalar::Int(i) => write!(f, "{i}"),
            Scalar::Float(x) => write!(f, "{x}"),
            Scalar::Bool(b) => write!(f, "{b}"),
            Scalar::Table(_) => f.write_str("<table>"),
        }
    }
}
