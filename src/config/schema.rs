//! The `schema` parameter: a `search_path` of comma-separated identifiers, each a plain
//! identifier or a double-quoted one. It is written into SQL (`SET LOCAL search_path TO ...`
//! behind PgBouncer), so it is checked against the grammar of an identifier list rather than
//! a list of forbidden characters: anything else (a comment, a semicolon, a quote) is refused.

use super::ConfigError;

/// PostgreSQL truncates longer names (`NAMEDATALEN - 1`).
const MAX_IDENTIFIER_BYTES: usize = 63;

/// `value` trimmed, when it is a list of identifiers; else an error naming `param` and the value.
pub(super) fn parse_schema(param: &str, value: &str) -> Result<String, ConfigError> {
    let v = value.trim();
    let reject = |why: String| ConfigError::InvalidValue {
        param: param.to_owned(),
        value: value.to_owned(),
        reason: format!(
            "{why}; expected schema names separated by commas, each a plain identifier \
             (letters, digits, `_`, `$`, not starting with a digit or `$`) or a double-quoted \
             one, e.g. `app,public` or `\"$user\",public`"
        ),
    };
    let mut rest = v;
    loop {
        rest = rest.trim_start();
        let (name_bytes, after) = if let Some(quoted) = rest.strip_prefix('"') {
            let end = closing_quote(quoted).ok_or_else(|| reject("an unclosed `\"`".into()))?;
            let (inner, after) = quoted.split_at(end);
            let name = inner.replace("\"\"", "\"");
            if name.is_empty() || name.contains('\0') {
                return Err(reject("an empty or NUL-holding quoted name".into()));
            }
            (name.len(), after.get(1..).unwrap_or_default())
        } else {
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
                .unwrap_or(rest.len());
            let (name, after) = rest.split_at(end);
            match name.chars().next() {
                None => return Err(reject("an empty name".into())),
                Some(c) if c.is_ascii_digit() || c == '$' => {
                    return Err(reject(format!("`{name}` starts with `{c}`")));
                }
                Some(_) => {}
            }
            (name.len(), after)
        };
        if name_bytes > MAX_IDENTIFIER_BYTES {
            return Err(reject(format!(
                "a name longer than {MAX_IDENTIFIER_BYTES} bytes"
            )));
        }
        let after = after.trim_start();
        match after.chars().next() {
            None => return Ok(v.to_owned()),
            Some(',') => rest = after.get(1..).unwrap_or_default(),
            Some(c) => return Err(reject(format!("unexpected `{c}`"))),
        }
    }
}

/// The index of the `"` that closes a quoted identifier (`""` is a quote inside it).
fn closing_quote(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while let Some(&c) = bytes.get(i) {
        if c == b'"' {
            if bytes.get(i + 1) == Some(&b'"') {
                i += 2;
                continue;
            }
            return Some(i);
        }
        i += 1;
    }
    None
}
