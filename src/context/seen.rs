//! The context names a pool has served, for `/health/db`.

use std::sync::RwLock;

/// The context names a pool has served, for `/health/db` (never the values). Bounded: the
/// names come from code, and a few are expected.
#[derive(Debug, Default)]
pub(crate) struct SeenNames(RwLock<Vec<String>>);

/// Names kept at most.
const SEEN_MAX: usize = 32;

impl SeenNames {
    /// Notes a context's names (a read lock when they are known already, the usual case).
    pub fn note<'a>(&self, names: impl Iterator<Item = &'a str> + Clone) {
        let known = |seen: &Vec<String>| names.clone().all(|n| seen.iter().any(|s| s == n));
        if self.0.read().is_ok_and(|seen| known(&seen)) {
            return;
        }
        if let Ok(mut seen) = self.0.write() {
            for name in names {
                if seen.len() < SEEN_MAX && !seen.iter().any(|s| s == name) {
                    seen.push(name.to_owned());
                }
            }
            seen.sort();
        }
    }

    /// The names seen so far, sorted.
    pub fn names(&self) -> Vec<String> {
        self.0.read().map(|s| s.clone()).unwrap_or_default()
    }
}
