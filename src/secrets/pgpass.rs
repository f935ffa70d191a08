//! The two file formats: a password file (the whole file is the password) and libpq's
//! passfile (`hostname:port:database:username:password` lines). Parsing never puts a line's
//! text in an error: a passfile line holds a password.

use crate::config::CredentialsRequest;
use crate::config::NamedPath;

use super::SecretError;

/// Why a passfile line is rejected; the same words as the libpq documentation, so that the
/// user recognises the format expected.
const EXPECTED: &str = "expected hostname:port:database:username:password";

/// The password held by a password file. No `Debug`: nothing may print it by accident.
pub(super) struct Password(pub(super) String);

/// Reads a password file's bytes as its password. Only one trailing line end is stripped
/// (editors add one; `echo` adds one): a password may begin or end with spaces.
pub(super) fn password_file(file: &NamedPath, bytes: &[u8]) -> Result<Password, SecretError> {
    let text = std::str::from_utf8(bytes).map_err(|_| SecretError::File {
        setting: file.setting.clone(),
        path: file.path.display().to_string(),
        reason: String::from("not UTF-8 text"),
    })?;
    let text = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(text);
    if text.trim().is_empty() {
        return Err(SecretError::Empty {
            setting: file.setting.clone(),
            path: file.path.display().to_string(),
        });
    }
    Ok(Password(text.to_owned()))
}

/// One passfile line. `None` is the `*` wildcard. No `Debug`: it holds a password.
struct Entry {
    host: Option<String>,
    port: Option<String>,
    database: Option<String>,
    user: Option<String>,
    password: String,
}

/// A parsed passfile, lines in file order (the first match wins, as in libpq).
pub(super) struct Passfile {
    entries: Vec<Entry>,
}

/// Parses a passfile. Strict (a named passfile): the first malformed line is the error.
/// Lenient (`~/.pgpass`, which the user did not name): malformed lines are skipped and their
/// errors pushed to `skipped`, for the caller to warn about once per change of the file.
pub(super) fn passfile(
    file: &NamedPath,
    bytes: &[u8],
    lenient: bool,
    skipped: &mut Vec<SecretError>,
) -> Result<Passfile, SecretError> {
    let mut entries = Vec::new();
    for (index, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.is_empty() || raw.starts_with(b"#") {
            continue;
        }
        let parsed = std::str::from_utf8(raw)
            .map_err(|_| "not UTF-8 text")
            .and_then(|line| entry(line).ok_or(EXPECTED));
        match parsed {
            Ok(e) => entries.push(e),
            Err(reason) => {
                let error = SecretError::Malformed {
                    setting: file.setting.clone(),
                    path: file.path.display().to_string(),
                    line: index + 1,
                    reason: reason.to_owned(),
                };
                if !lenient {
                    return Err(error);
                }
                skipped.push(error);
            }
        }
    }
    Ok(Passfile { entries })
}

/// Splits one line into its fields, as libpq does: `\` escapes the next character
/// (`\:`, `\\`, and any other), a lone `*` is a wildcard, and the password ends at the
/// first unescaped `:` (what follows is ignored). `None`: fewer than five fields.
fn entry(line: &str) -> Option<Entry> {
    let mut fields: Vec<(String, bool)> = Vec::with_capacity(5);
    let mut field = String::new();
    let mut escaped_any = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek().is_some() => {
                escaped_any = true;
                field.extend(chars.next());
            }
            ':' => {
                fields.push((std::mem::take(&mut field), escaped_any));
                escaped_any = false;
                if fields.len() == 5 {
                    break;
                }
            }
            c => field.push(c),
        }
    }
    if fields.len() < 5 {
        fields.push((field, escaped_any));
    }
    if fields.len() < 5 {
        return None;
    }
    let mut fields = fields.into_iter();
    let (password, _) = fields.next_back()?;
    // `\*` is a literal star; only a bare `*` matches anything.
    let mut next = || {
        fields
            .next()
            .and_then(|(text, escaped)| (escaped || text != "*").then_some(text))
    };
    let (host, port, database, user) = (next(), next(), next(), next());
    Some(Entry {
        host,
        port,
        database,
        user,
        password,
    })
}

impl Passfile {
    /// The password of the first line matching `request`, as libpq chooses it.
    ///
    /// The database compared is the URL's, else the user's name (the server's default, which
    /// libpq also uses). A Unix socket directory (or no host) also matches `localhost` lines:
    /// libpq does so only for its compiled-in default socket directory, which we cannot know,
    /// so any socket directory does. A matching line with an empty password ends the search
    /// without a password (libpq refuses to send an empty one): later sources are asked.
    pub(super) fn lookup(&self, request: &CredentialsRequest<'_>) -> Option<&str> {
        let port = request.port.to_string();
        let database = request.database.unwrap_or(request.user);
        let local = request.host.is_empty() || request.host.starts_with('/');
        let matches =
            |field: &Option<String>, value: &str| field.as_deref().is_none_or(|f| f == value);
        let entry = self.entries.iter().find(|e| {
            (matches(&e.host, request.host) || (local && e.host.as_deref() == Some("localhost")))
                && matches(&e.port, &port)
                && matches(&e.database, database)
                && matches(&e.user, request.user)
        })?;
        Some(entry.password.as_str()).filter(|p| !p.is_empty())
    }
}
