//! A private, throwaway PostgreSQL cluster: `initdb` + `pg_ctl` from the installed server
//! binaries, on a free port and a private socket directory, as the `postgres` OS user when we
//! run as root (initdb refuses root). Tests can stop, start and kill it without touching any
//! other server. A watchdog process removes it if the test process dies without dropping it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// A running (or stopped) private cluster.
pub struct PgCluster {
    pub port: u16,
    bin: PathBuf,
    data: PathBuf,
    sockets: PathBuf,
    log: PathBuf,
    _dir: TempDir,
}

fn bin_dir() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries under /usr/lib/postgresql")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("an initdb under /usr/lib/postgresql/*/bin")
}

pub(crate) fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// A command run as the `postgres` user when we are root.
pub(crate) fn as_pg(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

fn run(mut cmd: Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A temp dir for a cluster, its (not yet created) data dir and its socket dir, owned by the
/// `postgres` OS user when we are root.
fn cluster_dir(prefix: &str) -> (TempDir, PathBuf, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("temp dir");
    let data = dir.path().join("data");
    let sockets = dir.path().join("sock");
    std::fs::create_dir(&sockets).expect("socket dir");
    if is_root() {
        let pg = nix::unistd::User::from_name("postgres")
            .expect("look up user postgres")
            .expect("a `postgres` OS user");
        for p in [dir.path(), sockets.as_path()] {
            nix::unistd::chown(p, Some(pg.uid), Some(pg.gid)).expect("chown to postgres");
        }
    }
    (dir, data, sockets)
}

impl PgCluster {
    /// initdb + start.
    pub fn start() -> Self {
        let (dir, data, sockets) = cluster_dir("dbservice-pg-");
        let bin = bin_dir();
        let mut initdb = as_pg(&bin.join("initdb"));
        initdb.arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
        ]);
        run(initdb, "initdb");
        let cluster = Self {
            port: free_port(),
            bin,
            log: dir.path().join("postgres.log"),
            data,
            sockets,
            _dir: dir,
        };
        cluster.spawn_watchdog();
        cluster.start_server();
        cluster
    }

    /// A streaming replica of this cluster (`pg_basebackup -R -X stream`) on a port of its
    /// own, started and accepting read-only connections. Its own temp dir and watchdog.
    pub fn replica(&self) -> Self {
        let (dir, data, sockets) = cluster_dir("dbservice-pg-replica-");
        let mut backup = as_pg(&self.bin.join("pg_basebackup"));
        backup
            .args(self.superuser_args())
            .arg("-D")
            .arg(&data)
            .args(["-R", "-X", "stream", "-c", "fast", "--no-sync"]);
        run(backup, "pg_basebackup");
        let replica = Self {
            port: free_port(),
            bin: self.bin.clone(),
            log: dir.path().join("postgres.log"),
            data,
            sockets,
            _dir: dir,
        };
        replica.spawn_watchdog();
        replica.start_server();
        replica
    }

    /// On a replica: stops applying WAL (it keeps receiving it), so it falls behind on
    /// purpose until [`resume_replay`](Self::resume_replay).
    pub fn pause_replay(&self) {
        self.psql("SELECT pg_wal_replay_pause()");
    }

    /// On a replica: applies WAL again (and catches up).
    pub fn resume_replay(&self) {
        self.psql("SELECT pg_wal_replay_resume()");
    }

    fn pg_ctl(&self) -> Command {
        let mut c = as_pg(&self.bin.join("pg_ctl"));
        c.arg("-D").arg(&self.data);
        c
    }

    /// Starts the server (again), waiting until it accepts connections. `fsync=off` is safe
    /// here (the OS does not crash in these tests); `synchronous_commit` stays on, so a commit
    /// acknowledged before a crash restart (`-m immediate`) survives it, as in production.
    pub fn start_server(&self) {
        self.start_server_with("");
    }

    /// [`start_server`](Self::start_server) with `extra` server options after ours (a later
    /// `-c` wins), e.g. `-c max_connections=12` for a server that fills up.
    pub fn start_server_with(&self, extra: &str) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
             -c full_page_writes=off -c max_connections=300 {extra}",
            self.port,
            self.sockets.display()
        );
        let mut c = self.pg_ctl();
        c.arg("-l")
            .arg(&self.log)
            .args(["-w", "-t", "60", "-o", &opts, "start"]);
        run(c, "pg_ctl start");
    }

    /// Stops the server (fast mode: disconnects clients), waiting until it is down.
    pub fn stop_server(&self) {
        let mut c = self.pg_ctl();
        c.args(["-w", "-t", "60", "-m", "fast", "stop"]);
        run(c, "pg_ctl stop");
    }

    /// Kills the server (`immediate` mode: no goodbye to clients, as a crash), waiting until
    /// it is down; [`start_server`](Self::start_server) brings it back.
    pub fn kill(&self) {
        let mut c = self.pg_ctl();
        c.args(["-w", "-t", "60", "-m", "immediate", "stop"]);
        run(c, "pg_ctl stop -m immediate");
    }

    /// Stops the server in `mode` (`fast`: clean, disconnects clients; `immediate`: a crash,
    /// recovery at the next start) and starts it again.
    pub fn restart_server(&self, mode: &str) {
        let mut c = self.pg_ctl();
        c.args(["-w", "-t", "60", "-m", mode, "stop"]);
        run(c, "pg_ctl stop");
        self.start_server();
    }

    /// The postmaster and all its children (backends, background workers).
    /// None while the server is stopped (no `postmaster.pid`): called from `Drop` too, where a
    /// panic would abort the whole test binary.
    fn processes(&self) -> Vec<i32> {
        let Some(postmaster) = std::fs::read_to_string(self.data.join("postmaster.pid"))
            .ok()
            .and_then(|f| f.lines().next().and_then(|l| l.trim().parse::<i32>().ok()))
        else {
            return Vec::new();
        };
        let mut pids = vec![postmaster];
        for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // Fields after the parenthesised command name: state, ppid, ...
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok());
            if ppid == Some(postmaster) {
                pids.push(pid);
            }
        }
        pids
    }

    /// Freezes the whole server (SIGSTOP to the postmaster and every backend): sockets stay
    /// open, nothing answers. The kernel still completes TCP handshakes, as with a hung host.
    pub fn pause(&self) {
        use nix::sys::signal::{Signal, kill};
        for pid in self.processes() {
            let _ = kill(nix::unistd::Pid::from_raw(pid), Signal::SIGSTOP);
        }
    }

    /// Undoes [`pause`](Self::pause).
    pub fn resume(&self) {
        use nix::sys::signal::{Signal, kill};
        for pid in self.processes().into_iter().rev() {
            let _ = kill(nix::unistd::Pid::from_raw(pid), Signal::SIGCONT);
        }
    }

    /// `-h 127.0.0.1 -p <port> -U postgres`: the superuser over TCP, for the client programs.
    fn superuser_args(&self) -> [String; 6] {
        [
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
        ]
        .map(str::to_owned)
    }

    /// Runs one SQL command as the superuser.
    fn psql(&self, sql: &str) {
        let mut psql = as_pg(&self.bin.join("psql"));
        psql.args(self.superuser_args())
            .args(["-d", "postgres", "-c", sql]);
        run(psql, sql);
    }

    /// The first column of the first row `sql` returns, as text, on a new superuser session;
    /// `None` if psql could not run it (the server is down, starting, refusing).
    fn try_value(&self, sql: &str) -> Option<String> {
        let mut psql = as_pg(&self.bin.join("psql"));
        psql.args(self.superuser_args())
            .args(["-d", "postgres", "-X", "-A", "-t", "-c", sql])
            .env("PGCONNECT_TIMEOUT", "5");
        let out = psql.output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Polls `sql` every 50 ms until it returns `want`, at most `bound`; panics naming `what`
    /// (and the last answer) if it never does.
    fn wait_for_value(&self, sql: &str, want: &str, bound: Duration, what: &str) {
        let deadline = Instant::now() + bound;
        loop {
            let got = self.try_value(sql);
            if got.as_deref() == Some(want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: `{sql}` did not return {want:?} within {bound:?} (last: {got:?}); \
                 server log: {}",
                self.log.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// On a standby: promotes it to a primary (`pg_ctl promote`, which waits for the
    /// promotion), then waits until a new session sees it out of recovery (at most 30 s).
    pub fn promote(&self) {
        let mut c = self.pg_ctl();
        c.args(["-w", "-t", "60", "promote"]);
        run(c, "pg_ctl promote");
        self.wait_for_value(
            "SELECT pg_is_in_recovery()",
            "f",
            Duration::from_secs(30),
            "the promoted standby leaves recovery",
        );
    }

    /// Turns this (stopped, or stopped here with `-m fast`) former primary into a streaming
    /// standby of `primary`, as Patroni or CloudNativePG rejoin an old primary after a
    /// switchover: `standby.signal` and `primary_conninfo`, then a start. No `pg_rewind`: that
    /// works when this server was stopped cleanly (`-m fast`) before `primary` was promoted,
    /// since the fast shutdown's last WAL reaches the standby first, so nothing here diverged.
    /// Waits until it streams from `primary` (at most 30 s); panics naming the log otherwise.
    pub fn follow(&self, primary: &PgCluster) {
        if !self.processes().is_empty() {
            self.stop_server();
        }
        let conf = self.data.join("postgresql.auto.conf");
        let mut text = std::fs::read_to_string(&conf).expect("read postgresql.auto.conf");
        // A later line wins over an earlier one.
        text.push_str(&format!(
            "primary_conninfo = 'host=127.0.0.1 port={} user=postgres'\n\
             recovery_target_timeline = 'latest'\n",
            primary.port
        ));
        std::fs::write(&conf, text).expect("write postgresql.auto.conf");
        let signal = self.data.join("standby.signal");
        std::fs::write(&signal, "").expect("write standby.signal");
        if is_root() {
            let pg = nix::unistd::User::from_name("postgres")
                .expect("look up user postgres")
                .expect("a `postgres` OS user");
            nix::unistd::chown(&signal, Some(pg.uid), Some(pg.gid)).expect("chown standby.signal");
        }
        self.start_server();
        self.wait_for_value(
            "SELECT status FROM pg_stat_wal_receiver",
            "streaming",
            Duration::from_secs(30),
            "the old primary streams from the new one",
        );
    }

    /// Turns the whole server read-only (`on`) or writable again, as a primary demoted in
    /// place looks to its clients: `ALTER SYSTEM SET default_transaction_read_only` and a
    /// reload. Returns once a new session sees the setting (at most 10 s); sessions already
    /// open take it at their next transaction (PostgreSQL applies a reload between
    /// statements).
    pub fn set_read_only(&self, on: bool) {
        let value = if on { "on" } else { "off" };
        // ALTER SYSTEM is allowed in a read-only session, so this also undoes itself.
        self.psql(&format!(
            "ALTER SYSTEM SET default_transaction_read_only = {value}"
        ));
        self.psql("SELECT pg_reload_conf()");
        self.wait_for_value(
            "SHOW default_transaction_read_only",
            value,
            Duration::from_secs(10),
            "the server takes default_transaction_read_only",
        );
    }

    /// Makes the server re-read its configuration.
    fn reload(&self) {
        let mut c = self.pg_ctl();
        c.arg("reload");
        run(c, "pg_ctl reload");
    }

    /// Makes `role` log in over TCP with `password` (scram-sha-256) instead of `trust`.
    pub fn require_password(&self, role: &str, password: &str) {
        self.psql(&format!("CREATE ROLE {role} LOGIN PASSWORD '{password}'"));
        self.require_scram(role);
    }

    /// Makes the users `users` names (a role, or `+group` for its members) log in over TCP
    /// with scram-sha-256 instead of `trust`; the superuser keeps `trust`.
    pub fn require_scram(&self, users: &str) {
        let hba = self.data.join("pg_hba.conf");
        let old = std::fs::read_to_string(&hba).expect("read pg_hba.conf");
        let line = format!("host all {users} 127.0.0.1/32 scram-sha-256\n");
        std::fs::write(&hba, format!("{line}{old}")).expect("write pg_hba.conf");
        self.reload();
    }

    /// Runs `sql` as the superuser (a role's password changed, a role created).
    pub fn admin(&self, sql: &str) {
        self.psql(sql);
    }

    /// Turns TLS on with a throwaway CA (openssl) and a server certificate for the IP address
    /// 127.0.0.1 only; returns the CA certificate's path (for `sslrootcert`).
    pub fn enable_tls(&self) -> PathBuf {
        let dir = self._dir.path().join("tls");
        std::fs::create_dir_all(&dir).expect("tls dir");
        let sh = |script: &str| {
            let mut c = Command::new("sh");
            c.current_dir(&dir).args(["-c", script]);
            run(c, script);
        };
        sh(
            "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 \
            -subj /CN=dbservice-test-ca 2>/dev/null",
        );
        sh(
            "openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr \
            -subj /CN=127.0.0.1 2>/dev/null",
        );
        std::fs::write(
            dir.join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
        )
        .expect("ext.cnf");
        sh(
            "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
            -out server.crt -days 2 -extfile ext.cnf 2>/dev/null",
        );
        for f in ["server.crt", "server.key"] {
            std::fs::copy(dir.join(f), self.data.join(f)).expect("copy into the data dir");
        }
        if is_root() {
            let pg = nix::unistd::User::from_name("postgres")
                .expect("user")
                .expect("postgres user");
            for f in ["server.crt", "server.key"] {
                nix::unistd::chown(&self.data.join(f), Some(pg.uid), Some(pg.gid)).expect("chown");
            }
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            self.data.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .expect("chmod key");
        self.psql("ALTER SYSTEM SET ssl = on");
        self.reload();
        std::thread::sleep(std::time::Duration::from_millis(300));
        dir.join("ca.pem")
    }

    /// A URL for `database` on this cluster. Auth is `trust`, so the password is accepted and
    /// ignored: tests use it to check that it is never shown.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://postgres:{}@127.0.0.1:{}/{database}",
            super::PASSWORD,
            self.port
        )
    }

    /// Removes the cluster even if this process is killed: a detached shell polls our pid.
    fn spawn_watchdog(&self) {
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
             {pg_ctl} -D '{data}' -m immediate stop >/dev/null 2>&1; rm -rf '{root}'",
            pid = std::process::id(),
            pg_ctl = if is_root() {
                format!(
                    "runuser -u postgres -- {}",
                    self.bin.join("pg_ctl").display()
                )
            } else {
                self.bin.join("pg_ctl").display().to_string()
            },
            data = self.data.display(),
            root = self._dir.path().display(),
        );
        let _ = Command::new("setsid")
            .args(["sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        // A paused server cannot be stopped.
        self.resume();
        let mut c = self.pg_ctl();
        c.args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let _ = c.status();
    }
}
