//! One secret file, re-read only when it changed: a `stat` per connection compares the file's
//! stamp with the one last read, and the parsed content is kept. A file that turns bad after a
//! good read keeps serving its last good content, with one WARN per distinct failure: a
//! Secret being swapped, or an operator's slip, must not take the pool down.

use std::fs::Metadata;
use std::sync::Arc;
use std::sync::Mutex;

use crate::config::NamedPath;

use super::SecretError;

/// Parses a file's bytes; lenient parsers push the errors of skipped parts to the `Vec`.
pub(super) type Parser<T> =
    fn(&NamedPath, &[u8], bool, &mut Vec<SecretError>) -> Result<T, SecretError>;

/// How a file is judged, by the role it plays.
#[derive(Clone, Copy)]
pub(super) struct Rules {
    /// A passfile: ignored when group or others may read it (libpq's rule, so a file shared by
    /// mistake is not trusted).
    pub check_mode: bool,
    /// `~/.pgpass`, which the user did not name: its absence is normal and its faults are
    /// warnings, never errors.
    pub lenient: bool,
}

/// What tells one version of a file from another without reading it: a rename (Kubernetes'
/// `..data` swap) changes the inode, an in-place write the length or the times (nanoseconds;
/// the ctime catches a write that restored the mtime).
#[derive(Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    mode: u32,
}

impl Stamp {
    /// The stamp of `meta` (taken before the read, so that a write racing the read is seen as
    /// a change next time rather than missed).
    #[cfg(unix)]
    fn of(meta: &Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
            mode: meta.mode(),
        }
    }

    /// Elsewhere only the length and the modification time are known.
    #[cfg(not(unix))]
    fn of(meta: &Metadata) -> Self {
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or((0, 0), |d| {
                (d.as_secs() as i64, i64::from(d.subsec_nanos()))
            });
        Self {
            dev: 0,
            ino: 0,
            len: meta.len(),
            mtime,
            ctime: (0, 0),
            mode: 0,
        }
    }
}

/// Why a read gave nothing usable.
enum Failure {
    /// The file does not exist (normal for `~/.pgpass`).
    Missing(SecretError),
    /// A passfile others may read: the permission bits (`0o777` part).
    Loose(u32),
    /// Anything else: unreadable, empty, malformed.
    Bad(SecretError),
}

impl Failure {
    /// The words logged and compared to warn once per distinct failure (never content).
    fn reason(&self) -> String {
        match self {
            Failure::Missing(e) | Failure::Bad(e) => e.to_string(),
            Failure::Loose(mode) => format!("group or world access (mode {mode:04o})"),
        }
    }
}

/// Why [`Watched::read_regular`] read nothing.
enum Opened {
    Io(std::io::Error),
    NotRegular,
}

/// The last read and the last good content.
struct State<T> {
    /// The stamp of the last read, good or bad: the same stamp is not read again.
    stamp: Option<Stamp>,
    /// Shared with the callers, so a lookup does not copy a whole passfile.
    good: Option<Arc<T>>,
    /// The last failure's reason and its error (`None` for one that only ignores the file),
    /// while the file stays bad.
    failure: Option<(String, Option<SecretError>)>,
}

/// One file and its cache.
pub(super) struct Watched<T> {
    file: NamedPath,
    rules: Rules,
    parse: Parser<T>,
    /// A std mutex: held for a `stat` (and a read when the file changed), never across an
    /// `.await`.
    state: Mutex<State<T>>,
}

impl<T> Watched<T> {
    /// Reads the file once. A missing or bad file is an error unless `rules.lenient`; a
    /// passfile others may read is ignored with a WARN, as libpq does.
    pub(super) fn open(
        file: NamedPath,
        rules: Rules,
        parse: Parser<T>,
    ) -> Result<Self, SecretError> {
        let this = Self {
            file,
            rules,
            parse,
            state: Mutex::new(State {
                stamp: None,
                good: None,
                failure: None,
            }),
        };
        this.current(true)?;
        Ok(this)
    }

    /// The file and the setting that named it, for the answer's source.
    pub(super) fn file(&self) -> &NamedPath {
        &self.file
    }

    /// The file's current content: re-read when its stamp changed (or `fresh`), else the
    /// cached one. `Ok(None)`: the file is ignored (absent `~/.pgpass`, loose permissions).
    /// `Err` only while the file has never read well.
    pub(super) fn current(&self, fresh: bool) -> Result<Option<Arc<T>>, SecretError> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let meta = std::fs::metadata(&self.file.path);
        let stamp = meta.as_ref().ok().map(Stamp::of);
        if !fresh && stamp.is_some() && stamp == state.stamp {
            return self.answer(&state);
        }
        let outcome = match meta {
            Ok(meta) => self.read(&meta, state.stamp != stamp),
            Err(e) => Err(self.io_failure(&e)),
        };
        state.stamp = stamp;
        match outcome {
            Ok(content) => {
                if let Some((reason, _)) = state.failure.take() {
                    tracing::info!(
                        setting = %self.file.setting,
                        path = %self.file.path.display(),
                        previously = %reason,
                        "secret file reads well again"
                    );
                }
                state.good = Some(Arc::new(content));
            }
            Err(failure) => self.fail(&mut state, failure),
        }
        self.answer(&state)
    }

    /// The last good content, else the standing error (if the failure is one).
    fn answer(&self, state: &State<T>) -> Result<Option<Arc<T>>, SecretError> {
        match (&state.good, &state.failure) {
            (Some(good), _) => Ok(Some(Arc::clone(good))),
            (None, Some((_, Some(error)))) => Err(error.clone()),
            (None, _) => Ok(None),
        }
    }

    /// Records a failure, warning the first time this failure is seen in a row. A strict file
    /// that never read well does not warn: its error is returned instead (to `open`'s caller).
    fn fail(&self, state: &mut State<T>, failure: Failure) {
        let reason = failure.reason();
        let kept = state.good.is_some();
        let lenient = self.rules.lenient;
        let repeated = state.failure.as_ref().is_some_and(|(r, _)| *r == reason);
        // No `~/.pgpass` is the common case, not worth a word.
        let silent = matches!(failure, Failure::Missing(_)) && lenient && !kept;
        let fatal = !kept && !lenient && !matches!(failure, Failure::Loose(_));
        if !repeated && !silent && !fatal {
            self.warn(&failure, &reason, kept);
        }
        let error = match failure {
            Failure::Missing(e) | Failure::Bad(e) if !lenient => Some(e),
            _ => None,
        };
        state.failure = Some((reason, error));
    }

    /// The one WARN of a failure: the setting, the path and the reason, never content.
    fn warn(&self, failure: &Failure, reason: &str, kept: bool) {
        let setting = &self.file.setting;
        let path = self.file.path.display();
        match failure {
            _ if kept => tracing::warn!(
                %setting, %path, %reason,
                "secret file cannot be used; keeping its last good content"
            ),
            Failure::Loose(mode) => tracing::warn!(
                %setting, %path, mode = %format!("{mode:04o}"),
                "password file has group or world access; \
                 permissions should be u=rw (0600) or less; the file is ignored"
            ),
            _ => tracing::warn!(%setting, %path, %reason, "secret file cannot be used; ignored"),
        }
    }

    /// Reads and parses the file `meta` describes. `changed`: the file differs from the last
    /// read (a lenient parse's skipped lines are warned about once per change).
    fn read(&self, meta: &Metadata, changed: bool) -> Result<T, Failure> {
        if meta.is_dir() {
            return Err(Failure::Bad(self.file_error("is a directory")));
        }
        if !meta.is_file() {
            // A FIFO or a device would block the read or never change a stamp.
            return Err(Failure::Bad(self.file_error("not a regular file")));
        }
        if let Some(mode) = self.loose_mode(meta) {
            return Err(Failure::Loose(mode));
        }
        let bytes = self.read_regular().map_err(|e| match e {
            Opened::Io(e) => self.io_failure(&e),
            Opened::NotRegular => Failure::Bad(self.file_error("not a regular file")),
        })?;
        let mut skipped = Vec::new();
        let content = (self.parse)(&self.file, &bytes, self.rules.lenient, &mut skipped)
            .map_err(Failure::Bad)?;
        if changed {
            for error in skipped {
                tracing::warn!(error = %error, "passfile line skipped");
            }
        }
        Ok(content)
    }

    /// The file's bytes, if what is opened is a regular file: opened without blocking and
    /// checked on the handle, so a FIFO swapped in after the `stat` can neither block the
    /// open nor be read (the check and the read see the same file).
    fn read_regular(&self) -> Result<Vec<u8>, Opened> {
        use std::io::Read;
        let mut options = std::fs::OpenOptions::new();
        options.read(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.custom_flags(libc::O_NONBLOCK);
        }
        let mut f = options.open(&self.file.path).map_err(Opened::Io)?;
        if !f.metadata().map_err(Opened::Io)?.is_file() {
            return Err(Opened::NotRegular);
        }
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).map_err(Opened::Io)?;
        Ok(bytes)
    }

    /// The permission bits of a passfile that group or others may access.
    #[cfg(unix)]
    fn loose_mode(&self, meta: &Metadata) -> Option<u32> {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        (self.rules.check_mode && mode & 0o077 != 0).then_some(mode)
    }

    /// libpq checks no permissions outside Unix either.
    #[cfg(not(unix))]
    fn loose_mode(&self, _meta: &Metadata) -> Option<u32> {
        None
    }

    /// An I/O error in the words of a message (its kind, never a path's content).
    fn io_failure(&self, e: &std::io::Error) -> Failure {
        use std::io::ErrorKind;
        let reason = match e.kind() {
            ErrorKind::NotFound => return Failure::Missing(self.file_error("no such file")),
            ErrorKind::PermissionDenied => String::from("permission denied"),
            ErrorKind::IsADirectory => String::from("is a directory"),
            ErrorKind::NotADirectory => String::from("a parent is not a directory"),
            _ => e.to_string(),
        };
        Failure::Bad(self.file_error(&reason))
    }

    /// A [`SecretError::File`] for this file.
    fn file_error(&self, reason: &str) -> SecretError {
        SecretError::File {
            setting: self.file.setting.clone(),
            path: self.file.path.display().to_string(),
            reason: reason.to_owned(),
        }
    }
}
