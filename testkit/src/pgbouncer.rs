//! A private PgBouncer in front of a private cluster, in transaction mode, as the `postgres`
//! OS user when we run as root (PgBouncer refuses root). `PGBOUNCER_BIN` picks the binary
//! (default: `pgbouncer` on the PATH, Debian's 1.18).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::pg_cluster::{PgCluster, as_pg, free_port, is_root};

/// A running PgBouncer; stopped when dropped.
pub struct PgBouncer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: Child,
    ini: PathBuf,
    _dir: tempfile::TempDir,
}

/// The binary to run, if installed.
pub fn binary() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("PGBOUNCER_BIN") {
        return Some(PathBuf::from(p));
    }
    [
        "/usr/sbin/pgbouncer",
        "/usr/bin/pgbouncer",
        "/usr/local/bin/pgbouncer",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

/// The installed binary's version as (major, minor), if it runs.
pub fn version() -> Option<(u32, u32)> {
    let out = Command::new(binary()?).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v = text.split_whitespace().nth(1)?;
    let mut parts = v.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

impl PgBouncer {
    /// Starts PgBouncer in transaction mode in front of `cluster`, with `pool_size` server
    /// connections per database/user pair; `extra` is appended to its `[pgbouncer]` section.
    /// Returns `None` (after saying so on stderr) when no binary is installed.
    pub fn start(cluster: &PgCluster, pool_size: u32, extra: &str) -> Option<Self> {
        let Some(bin) = binary() else {
            eprintln!(
                "SKIPPED: no pgbouncer binary (install Debian's `pgbouncer` or set PGBOUNCER_BIN)"
            );
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("dbservice-pgbouncer-")
            .tempdir()
            .expect("temp dir");
        let port = free_port();
        let ini = dir.path().join("pgbouncer.ini");
        let users = dir.path().join("userlist.txt");
        std::fs::write(&users, "\"postgres\" \"\"\n").expect("userlist");
        std::fs::write(
            &ini,
            format!(
                "[databases]\n* = host=127.0.0.1 port={cport}\n\n[pgbouncer]\n\
                 listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
                 auth_type = trust\nauth_file = {users}\npool_mode = transaction\n\
                 default_pool_size = {pool_size}\nmin_pool_size = 0\nreserve_pool_size = 0\n\
                 max_client_conn = 500\nserver_reset_query =\n\
                 ignore_startup_parameters = extra_float_digits\n\
                 logfile = {log}\npidfile = {pid}\n{extra}\n",
                cport = cluster.port,
                users = users.display(),
                log = dir.path().join("pgbouncer.log").display(),
                pid = dir.path().join("pgbouncer.pid").display(),
            ),
        )
        .expect("pgbouncer.ini");
        if is_root() {
            let pg = nix::unistd::User::from_name("postgres")
                .expect("look up user postgres")
                .expect("a `postgres` OS user");
            for p in [dir.path(), ini.as_path(), users.as_path()] {
                nix::unistd::chown(p, Some(pg.uid), Some(pg.gid)).expect("chown to postgres");
            }
        }
        let child = spawn(&bin, &ini);
        let this = Self {
            port,
            child,
            ini,
            _dir: dir,
        };
        this.wait_ready();
        Some(this)
    }

    /// `postgres://postgres@127.0.0.1:<port>/<database>` through PgBouncer.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    fn wait_ready(&self) {
        let until = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < until,
                "pgbouncer did not listen within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops PgBouncer (its clients lose their connections) and starts it again on the same
    /// port.
    pub fn restart(&mut self) {
        self.stop();
        let bin = binary().expect("pgbouncer binary");
        self.child = spawn(&bin, &self.ini);
        self.wait_ready();
    }

    fn stop(&mut self) {
        // `runuser` passes SIGTERM on to PgBouncer, which closes at once.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The port must be free again before a restart binds it.
        let until = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            && Instant::now() < until
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn spawn(bin: &Path, ini: &Path) -> Child {
    as_pg(bin)
        .arg(ini)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start pgbouncer")
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        self.stop();
    }
}
