//! Unknown settings: what to call them, what they were probably meant to be, and whether they
//! stop the start.
//!
//! Outside the production profile an unknown name is an error, so a typo is caught where it is
//! made. In production it is a warning: a newer image's setting stays in the environment (or
//! the config file) when the image is rolled back, and the older image must still start.

use super::error::ConfigError;
use super::profile::Profile;

/// One unknown key and where it was written.
pub(crate) struct Unknown<'a> {
    /// The key, lower-case, as the layers merged it.
    pub key: &'a str,
    /// The environment variable that set it, if one did; otherwise the config file.
    pub variable: Option<String>,
}

/// The message naming `unknown`, with a suggestion among `known` or, failing one, the list.
pub(crate) fn describe(unknown: &Unknown<'_>, known: &[&str], file: &str) -> String {
    let closest = known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(unknown.key, k), *k))
        .min_by_key(|(distance, _)| *distance)
        // Close relative to its length: `foo` is not a typo of `port`.
        .filter(|(distance, _)| *distance <= 3 && distance * 3 <= unknown.key.len());
    let (named, suggestion) = match &unknown.variable {
        Some(var) => (
            format!("unknown setting `{}` ({var})", unknown.key),
            closest.map(|(_, k)| format!("DBSERVICE_{}", k.to_ascii_uppercase())),
        ),
        None => (
            format!("unknown setting `{}` in {file}", unknown.key),
            closest.map(|(_, k)| k.to_owned()),
        ),
    };
    match suggestion {
        Some(s) => format!("{named}: did you mean `{s}`?"),
        None => format!("{named}; known settings are {}", known.join(", ")),
    }
}

/// Unknown settings as the profile treats them: `Ok` with one warning each in production, the
/// first as an error otherwise.
pub(crate) fn judge(
    messages: Vec<String>,
    profile: Option<Profile>,
) -> Result<Vec<String>, ConfigError> {
    if profile == Some(Profile::Production) {
        return Ok(messages
            .into_iter()
            .map(|m| {
                format!("{m} (ignored: the production profile starts despite unknown settings)")
            })
            .collect());
    }
    match messages.into_iter().next() {
        Some(first) => Err(ConfigError::Source(format!(
            "{first} (unknown settings stop the start outside the production profile)"
        ))),
        None => Ok(Vec::new()),
    }
}
