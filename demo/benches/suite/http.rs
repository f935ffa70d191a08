//! HTTP-level runs: servers in processes of their own, `wrk` with a Lua script choosing random
//! ids, `/health/ready` sampled while the read load saturates the pool, peak RSS.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::pool::ROWS;
use crate::stats::Sample;

/// The name of the demo exporting over OTLP (the report finds its row by it).
pub const OTLP_DEMO: &str = "demo, OTLP export to a local receiver";

/// A server under test, killed on drop.
pub struct Server {
    pub name: &'static str,
    pub port: u16,
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// The demo binary with `env` on top of a clean environment (no `.env` is read: the
    /// working directory is a temp dir).
    pub fn demo(name: &'static str, url: &str, env: &[(&str, &str)], dir: &Path) -> Server {
        Server::demo_logged(name, url, env, dir, None)
    }

    /// [`Server::demo`] with its log (stdout) written to `log` instead of discarded.
    pub fn demo_logged(
        name: &'static str,
        url: &str,
        env: &[(&str, &str)],
        dir: &Path,
        log: Option<&Path>,
    ) -> Server {
        let port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dbservice"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", url)
            .env("PORT", port.to_string())
            .current_dir(dir);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let stdout = log.map_or_else(Stdio::null, |path| {
            std::fs::File::create(path)
                .map(Stdio::from)
                .expect("create the server's log file")
        });
        Server::spawn(name, port, cmd, stdout)
    }

    /// The minimal bare-SeaORM server (this benchmark, re-executed) in `mode`.
    pub fn minimal(name: &'static str, mode: &str, url: &str) -> Server {
        let port = free_port();
        let mut cmd = Command::new(std::env::current_exe().expect("own path"));
        cmd.args(["--serve-minimal", mode, &port.to_string(), url]);
        Server::spawn(name, port, cmd, Stdio::null())
    }

    fn spawn(name: &'static str, port: u16, mut cmd: Command, stdout: Stdio) -> Server {
        let child = cmd
            .stdout(stdout)
            .stderr(Stdio::inherit())
            .spawn()
            .expect("server starts");
        let server = Server { name, port, child };
        // Ready when a read answers 200 (the demo also migrates first); bounded.
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if http_get(port, "/api/accounts/1").is_some_and(|(status, _)| status == 200) {
                return server;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{name} did not answer within 30 s");
    }

    /// CPU time the server process has used so far, µs.
    pub fn cpu_micros(&self) -> Option<f64> {
        crate::stats::cpu_micros(&self.child.id().to_string())
    }

    /// Peak resident set size so far (`VmHWM`), in MiB.
    pub fn peak_rss_mib(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let kib: f64 = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        Some(kib / 1024.0)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A one-shot HTTP/1.1 GET's body (e.g. `/metrics`), bounded by 5 s.
pub fn http_body(port: u16, path: &str) -> Option<String> {
    use std::io::Read;
    let mut s = send_get(port, path)?;
    let mut all = String::new();
    s.read_to_string(&mut all).ok()?;
    all.split_once("\r\n\r\n").map(|(_, body)| body.to_owned())
}

/// Connects (5 s bound) and sends `GET path` with `Connection: close`.
fn send_get(port: u16, path: &str) -> Option<std::net::TcpStream> {
    use std::io::Write;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    Some(s)
}

/// A one-shot HTTP/1.1 GET over a fresh connection, bounded by 5 s: (status, elapsed).
pub fn http_get(port: u16, path: &str) -> Option<(u16, Duration)> {
    use std::io::Read;
    let started = Instant::now();
    let mut s = send_get(port, path)?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    let status = std::str::from_utf8(&head[9..12]).ok()?.parse().ok()?;
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    Some((status, started.elapsed()))
}

/// wrk's closing hook: a summary line our parser reads.
pub const DONE_LUA: &str = r#"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH %d %d %d %d %d %d\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), latency.max,
    e.connect + e.read + e.write + e.timeout + e.status))
end
"#;

/// The Lua scripts wrk runs: random ids, and a summary line our parser reads.
pub fn write_scripts(dir: &Path) -> (PathBuf, PathBuf) {
    let done = DONE_LUA;
    let get = dir.join("get.lua");
    std::fs::write(
        &get,
        format!(
            "math.randomseed(os.time())\n\
             request = function()\n  return wrk.format(\"GET\", \"/api/accounts/\" .. math.random(1, {ROWS}))\nend\n{done}"
        ),
    )
    .expect("write get.lua");
    let post = dir.join("post.lua");
    std::fs::write(
        &post,
        format!(
            "math.randomseed(os.time())\n\
             wrk.method = \"POST\"\n\
             wrk.headers[\"Content-Type\"] = \"application/json\"\n\
             request = function()\n\
               local from = math.random(1, {ROWS})\n\
               local to = from % {ROWS} + math.random(1, {ROWS} - 1)\n\
               if to > {ROWS} then to = to - {ROWS} end\n\
               return wrk.format(nil, \"/api/transfers\", nil,\n\
                 string.format('{{\"from_account_id\":%d,\"to_account_id\":%d,\"amount_cents\":1}}', from, to))\n\
             end\n{done}"
        ),
    )
    .expect("write post.lua");
    (get, post)
}

/// `wrk -t2 -c<conns> -d<seconds>` with `script` against `path` on `server`, with the
/// server's CPU time per answered request.
pub fn wrk(server: &Server, path: &str, script: &Path, conns: u32, seconds: u64) -> Sample {
    let port = server.port;
    let before = server.cpu_micros();
    let out = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{conns}"),
            &format!("-d{seconds}s"),
            "--timeout",
            "10s",
            "-s",
        ])
        .arg(script)
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .expect("wrk runs (install it: apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(line) = text.lines().find(|l| l.starts_with("BENCH ")) else {
        eprintln!(
            "wrk printed no summary:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        return Sample::default();
    };
    let n: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let [requests, duration_us, p50, p99, max, errors] = n[..] else {
        return Sample::default();
    };
    let elapsed = duration_us / 1e6;
    Sample {
        // wrk counts non-2xx answers in `requests` too; they are errors here.
        ops_per_sec: (requests - errors).max(0.0) / elapsed,
        p50_ms: p50 / 1000.0,
        p99_ms: p99 / 1000.0,
        max_ms: max / 1000.0,
        errors: errors as u64,
        cpu_us_per_op: 0.0,
    }
    .with_cpu(before, server.cpu_micros(), elapsed)
}

/// Samples `GET /health/ready` every `every` until `stop` is set: latencies in µs and the
/// number of answers other than 200.
pub fn sample_readiness(
    port: u16,
    every: Duration,
    stop: &std::sync::atomic::AtomicBool,
) -> (Vec<u32>, u64) {
    let mut latencies = Vec::new();
    let mut not_ready = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        match http_get(port, "/health/ready") {
            Some((200, took)) => latencies.push(took.as_micros() as u32),
            _ => not_ready += 1,
        }
        std::thread::sleep(every);
    }
    (latencies, not_ready)
}
