//! `.env`: read into the settings' view of the environment (never into the process
//! environment), and its errors told without the file's contents.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::super::error::ConfigError;

/// Adds the variables of `./.env` that `env` lacks (a variable already set wins) and returns
/// their names.
pub(super) fn read_into(env: &mut HashMap<String, String>) -> Result<HashSet<String>, ConfigError> {
    let mut from_dotenv = HashSet::new();
    if let Some(path) = find_dotenv() {
        let iter = dotenvy::from_path_iter(&path)
            .map_err(|e| ConfigError::Source(dotenv_error(&path, &e)))?;
        for item in iter {
            let (k, v) = item.map_err(|e| ConfigError::Source(dotenv_error(&path, &e)))?;
            if DRIVER_VARIABLES.contains(&k.as_str()) && !env.contains_key(&k) {
                return Err(ConfigError::Source(format!(
                    "{}: `{k}` is read by the PostgreSQL driver from the process environment \
                     only, so this line would be ignored; set it in the environment, or its \
                     equivalent in DATABASE_URL",
                    path.display()
                )));
            }
            if let std::collections::hash_map::Entry::Vacant(slot) = env.entry(k) {
                from_dotenv.insert(slot.key().clone());
                slot.insert(v);
            }
        }
    }
    Ok(from_dotenv)
}

/// The variables the PostgreSQL driver reads from the process environment itself (sqlx's
/// `PgConnectOptions`). `.env` is read into our settings, never into the process environment
/// (changing it under running threads is unsound), so the driver would not see them there.
const DRIVER_VARIABLES: &[&str] = &[
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGUSER",
    "PGPASSWORD",
    "PGDATABASE",
    "PGSSLMODE",
    "PGSSLROOTCERT",
    "PGSSLCERT",
    "PGSSLKEY",
    "PGAPPNAME",
    "PGOPTIONS",
];

/// `.env` in the working directory. Not in its parents (dotenvy's `dotenv()` walks up): a
/// `.env` left in `/` or a home directory would otherwise configure every server started below
/// it, unseen by whoever reads the deployment.
fn find_dotenv() -> Option<PathBuf> {
    let candidate = std::env::current_dir().ok()?.join(".env");
    candidate.is_file().then_some(candidate)
}

/// A `.env` problem, told without the file's contents: dotenvy's own message repeats the whole
/// malformed line, which may be `DATABASE_URL` with its password. Only the line number and the
/// key (when the line has one) are named.
fn dotenv_error(path: &Path, err: &dotenvy::Error) -> String {
    match err {
        dotenvy::Error::LineParse(line, _) => {
            let first = line.lines().next().unwrap_or_default();
            let number = std::fs::read_to_string(path).ok().and_then(|text| {
                text.lines()
                    .position(|l| l == first)
                    .map(|i| format!(" {}", i + 1))
            });
            let key = first
                .trim_start()
                .trim_start_matches("export ")
                .split(['=', ' ', '\t'])
                .next()
                .filter(|k| {
                    !k.is_empty()
                        && k.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
                })
                .map(|k| format!(" (key `{k}`)"))
                .unwrap_or_default();
            format!(
                "{}: cannot parse line{}{key}; the line is not shown, it may hold a secret",
                path.display(),
                number.unwrap_or_default()
            )
        }
        dotenvy::Error::Io(e) => format!("{}: {e}", path.display()),
        // Other variants name a variable, never a value.
        other => format!("{}: {other}", path.display()),
    }
}
