//! Unit tests of `secrets`, on real files in a temporary directory: the password file here,
//! the passfile and the provider with the precedence in the submodules.

mod passfile;
mod provider;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use super::*;

/// Long enough for a provider that answers at once, on a loaded machine.
const BOUND: Duration = Duration::from_secs(5);

/// A file named by `setting`.
fn named(setting: &str, path: &Path) -> NamedPath {
    NamedPath {
        setting: setting.to_owned(),
        path: path.to_owned(),
    }
}

/// Writes `content` to `path` (in place) with `mode`.
fn write(path: &Path, content: &str, mode: u32) {
    std::fs::write(path, content).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Replaces `path` by a new file, as an atomic writer (or Kubernetes) does.
fn replace(path: &Path, content: &str) {
    let temp = path.with_extension("new");
    write(&temp, content, 0o600);
    std::fs::rename(&temp, path).expect("rename");
}

/// A connection to `host:port` as `user`.
fn request<'a>(
    host: &'a str,
    port: u16,
    database: Option<&'a str>,
    user: &'a str,
) -> CredentialsRequest<'a> {
    CredentialsRequest {
        backend: "postgresql",
        host,
        port,
        database,
        user,
        refused: false,
    }
}

/// The usual request of these tests.
fn db() -> CredentialsRequest<'static> {
    request("db.example", 5432, Some("app"), "app")
}

/// The password `secrets` resolves for `req` (no URL password).
async fn password(secrets: &Secrets, req: &CredentialsRequest<'_>, fresh: bool) -> Option<String> {
    let resolved = secrets
        .resolve(req, false, fresh, BOUND)
        .await
        .expect("resolve");
    resolved.password
}

/// Secrets with only a password file.
fn password_file(path: &Path) -> Result<Secrets, SecretError> {
    Secrets::open(CredentialSources {
        password_file: Some(named("DATABASE_PASSWORD_FILE", path)),
        ..CredentialSources::default()
    })
}

/// What the code logs while the returned guard lives (this thread only: `#[tokio::test]`
/// runs on the current thread).
fn capture() -> (Arc<Mutex<Vec<u8>>>, tracing::subscriber::DefaultGuard) {
    #[derive(Clone)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("sink").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let sink = Sink(Arc::clone(&buffer));
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    (buffer, tracing::subscriber::set_default(subscriber))
}

/// The text logged so far.
fn logged(buffer: &Arc<Mutex<Vec<u8>>>) -> String {
    String::from_utf8_lossy(&buffer.lock().expect("sink")).into_owned()
}

#[tokio::test]
async fn a_password_file_loses_one_line_end_and_keeps_spaces() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("pw");
    for (content, expected) in [
        ("s3cret\n", "s3cret"),
        ("s3cret", "s3cret"),
        ("s3cret\r\n", "s3cret"),
        (" s3 cret \n", " s3 cret "),
        ("s3cret\n\n", "s3cret\n"),
    ] {
        write(&path, content, 0o644);
        let secrets = password_file(&path).expect("open");
        assert_eq!(
            password(&secrets, &db(), false).await.as_deref(),
            Some(expected)
        );
        let resolved = secrets
            .resolve(&db(), false, false, BOUND)
            .await
            .expect("resolve");
        assert_eq!(
            resolved.source,
            Some(format!("DATABASE_PASSWORD_FILE {}", path.display()))
        );
        assert!(resolved.rereadable);
        assert!(resolved.user.is_none());
    }
}

#[tokio::test]
async fn an_empty_or_blank_password_file_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("pw");
    for content in ["", "\n", "  \r\n"] {
        write(&path, content, 0o600);
        let err = password_file(&path).expect_err("empty");
        assert!(matches!(err, SecretError::Empty { .. }), "{err:?}");
        assert!(!err.is_transient());
    }
}

#[tokio::test]
async fn a_missing_password_file_names_the_setting_and_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("absent");
    let err = password_file(&path).expect_err("missing");
    let text = err.to_string();
    assert!(text.starts_with("DATABASE_PASSWORD_FILE "), "{text}");
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.ends_with("no such file"), "{text}");
    let err = password_file(dir.path()).expect_err("a directory");
    assert!(err.to_string().ends_with("is a directory"), "{err}");
}

/// A FIFO (or a device) is refused without being opened for a blocking read: a worker thread
/// must never wait on a writer that may not come.
#[tokio::test]
async fn a_fifo_in_place_of_the_file_is_refused_without_blocking() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let opened = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::task::spawn_blocking(move || password_file(&path).map(|_| ())),
    )
    .await
    .expect("no blocking open")
    .expect("task");
    let err = opened.expect_err("a FIFO is not a password file");
    assert!(err.to_string().ends_with("not a regular file"), "{err}");
}

#[tokio::test]
async fn a_file_replaced_by_a_rename_is_read_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("pw");
    write(&path, "first\n", 0o600);
    let secrets = password_file(&path).expect("open");
    assert_eq!(
        password(&secrets, &db(), false).await.as_deref(),
        Some("first")
    );
    replace(&path, "second\n");
    assert_eq!(
        password(&secrets, &db(), false).await.as_deref(),
        Some("second")
    );
}

#[tokio::test]
async fn a_file_rewritten_in_place_with_the_same_length_is_read_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("pw");
    write(&path, "aaaa", 0o600);
    let secrets = password_file(&path).expect("open");
    assert_eq!(
        password(&secrets, &db(), false).await.as_deref(),
        Some("aaaa")
    );
    // Same inode, same length, same second: `fresh` reads it whatever the stamp says.
    write(&path, "bbbb", 0o600);
    assert_eq!(
        password(&secrets, &db(), true).await.as_deref(),
        Some("bbbb")
    );
    // The timestamps' nanoseconds tell the next write (past the kernel's clock tick).
    std::thread::sleep(Duration::from_millis(50));
    write(&path, "cccc", 0o600);
    assert_eq!(
        password(&secrets, &db(), false).await.as_deref(),
        Some("cccc")
    );
}

#[tokio::test]
async fn a_file_gone_bad_keeps_its_last_good_password_with_one_warning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("pw");
    write(&path, "kept-secret\n", 0o600);
    let secrets = password_file(&path).expect("open");
    let (logs, _guard) = capture();
    std::fs::remove_file(&path).expect("remove");
    for fresh in [false, false, true, false] {
        assert_eq!(
            password(&secrets, &db(), fresh).await.as_deref(),
            Some("kept-secret")
        );
    }
    let text = logged(&logs);
    assert_eq!(
        text.matches("keeping its last good content").count(),
        1,
        "{text}"
    );
    assert!(
        text.contains("DATABASE_PASSWORD_FILE") && text.contains("no such file"),
        "{text}"
    );
    // Another failure is another warning; emptied, it is still the last good one.
    write(&path, "\n", 0o600);
    assert_eq!(
        password(&secrets, &db(), false).await.as_deref(),
        Some("kept-secret")
    );
    assert_eq!(
        password(&secrets, &db(), false).await.as_deref(),
        Some("kept-secret")
    );
    let text = logged(&logs);
    assert_eq!(
        text.matches("keeping its last good content").count(),
        2,
        "{text}"
    );
    replace(&path, "new-secret\n");
    assert_eq!(
        password(&secrets, &db(), false).await.as_deref(),
        Some("new-secret")
    );
    let text = logged(&logs);
    assert!(text.contains("reads well again"), "{text}");
    assert!(
        !text.contains("secret\n") && !text.contains("-secret"),
        "{text}"
    );
}

#[tokio::test]
async fn a_symlinked_secret_swapped_like_kubernetes_is_followed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let v1 = root.join("v1");
    let v2 = root.join("v2");
    std::fs::create_dir(&v1).expect("mkdir");
    std::fs::create_dir(&v2).expect("mkdir");
    write(&v1.join("pw"), "one", 0o644);
    write(&v2.join("pw"), "two", 0o644);
    std::os::unix::fs::symlink("v1", root.join("..data")).expect("symlink");
    std::os::unix::fs::symlink("..data/pw", root.join("pw")).expect("symlink");
    let secrets = password_file(&root.join("pw")).expect("open");
    assert_eq!(
        password(&secrets, &db(), false).await.as_deref(),
        Some("one")
    );
    std::os::unix::fs::symlink("v2", root.join("..data_tmp")).expect("symlink");
    std::fs::rename(root.join("..data_tmp"), root.join("..data")).expect("swap");
    assert_eq!(
        password(&secrets, &db(), false).await.as_deref(),
        Some("two")
    );
}

#[test]
fn secrets_are_shared_across_tasks_and_never_shown() {
    fn shared<T: Send + Sync>() {}
    shared::<Secrets>();
    let resolved = Resolved {
        password: Some(String::from("hunter2")),
        ..Resolved::default()
    };
    assert!(!format!("{resolved:?}").contains("hunter2"));
}
