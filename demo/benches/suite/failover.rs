//! Failover under load: a fresh private primary and a streaming standby of it, one demo server
//! on the multi-host URL listing the standby first (`target_session_attrs=read-write`, every
//! other setting at its default), a steady transfer load; then the primary is stopped
//! (`pg_ctl stop -m fast`) and the standby promoted. Per round: time from the stop and from
//! the promotion to the first acknowledged transfer, the 503 answers meanwhile, and any other
//! non-2xx answer (there must be none). Every wait is bounded: a round without a write within
//! [`ROUND_BOUND`] of the stop is reported as failed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dbservice_testkit::pg_cluster::PgCluster;

use crate::http::{self, Server};
use crate::options::Opts;
use crate::stats::median;

/// Accounts loaded per round: enough that random pairs rarely collide, small enough to be quick.
const ACCOUNTS: usize = 1_000;
/// Concurrent client tasks, each sending one transfer at a time.
const CLIENTS: usize = 8;
/// Load before the stop, and after the first write on the new primary.
const BEFORE: Duration = Duration::from_secs(2);
const AFTER: Duration = Duration::from_secs(2);
/// A client's pause after an answer other than 201 (it does not wait for Retry-After, so the
/// first write back is seen within this much).
const PAUSE: Duration = Duration::from_millis(50);
/// A round fails when no write is acknowledged within this long after the stop began.
const ROUND_BOUND: Duration = Duration::from_secs(60);
/// Each request's bound (the demo's own bounds are a few seconds).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// How long past the end of the load a transfer of unknown outcome is still sent again.
const SETTLE: Duration = Duration::from_secs(10);
const UNKNOWN: &str = "commit_outcome_unknown";
/// The target: writes back within this long of the promotion (median over rounds).
const TARGET_S: f64 = 10.0;

/// One answer (or transport failure) as a client saw it.
struct Answer {
    done: Instant,
    took: Duration,
    /// The HTTP status, or `Err` with the transport error's kind.
    status: Result<u16, String>,
    retry_after: bool,
    /// The error code of an answer other than 201 or 503 (`{"error": {"code": ...}}`).
    code: Option<String>,
    /// On the 201 that settles a transfer first answered `commit_outcome_unknown`: whether it
    /// had committed (answered as a replay of the original) or not (created by the retry).
    settles: Option<bool>,
    /// Whether this was a transfer of unknown outcome sent again.
    retry: bool,
}

/// What one round measured.
#[derive(Default)]
struct Round {
    stop_took: f64,
    promote_took: f64,
    /// Seconds from the stop's start / the promotion's end to the first 201 after the stop.
    stop_to_write: Option<f64>,
    promotion_to_write: Option<f64>,
    /// 503 answers received between the stop's start and the first write back.
    n503: u64,
    /// 503 answers outside that window (there should be none).
    n503_outside: u64,
    /// 503 answers without `Retry-After`.
    n503_bare: u64,
    /// Every other answer than 201 or 503 (status, or transport error), with its count.
    other: BTreeMap<String, u64>,
    /// Transfers answered `commit_outcome_unknown` (504), and what sending them again with the
    /// same key found: they had committed, they had not, or no answer came.
    unknown: u64,
    unknown_committed: u64,
    unknown_not_committed: u64,
    acknowledged: u64,
    slowest: f64,
    /// Why the round failed, if it did.
    failed: Option<String>,
}

impl Round {
    fn other_total(&self) -> u64 {
        self.other.values().sum()
    }
}

/// Runs the section; returns its Markdown.
pub(crate) async fn section(opts: &Opts, dir: &Path) -> String {
    let mut rounds = Vec::new();
    for round in 1..=opts.rounds {
        let r = run_round(round, dir).await;
        let fmt = |x: Option<f64>| x.map_or("none".into(), |s| format!("{} s", secs(s)));
        eprintln!(
            "round {round}: failover: stop → first write {}, promotion → first write {}, \
             503 meanwhile {}, other non-2xx {}, acknowledged {}{}",
            fmt(r.stop_to_write),
            fmt(r.promotion_to_write),
            r.n503,
            r.other_total(),
            r.acknowledged,
            r.failed
                .as_ref()
                .map_or(String::new(), |f| format!(", FAILED: {f}"))
        );
        if r.unknown > 0 {
            eprintln!(
                "round {round}: failover: {} × {UNKNOWN}, sent again with the same key: {} had committed, {} had not",
                r.unknown, r.unknown_committed, r.unknown_not_committed
            );
        }
        if r.other_total() > 0 {
            eprintln!(
                "!!! round {round}: failover: UNEXPECTED answers (neither 201 nor 503): {}",
                breakdown(&r.other)
            );
        }
        rounds.push(r);
    }
    render(opts, &rounds)
}

fn breakdown(other: &BTreeMap<String, u64>) -> String {
    other
        .iter()
        .map(|(k, n)| format!("{n} × {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Seconds, or `> 60` for a round that never wrote again (no `-0.00`).
fn secs(x: f64) -> String {
    if x.abs() < 0.005 {
        "0.00".into()
    } else if x.is_finite() {
        format!("{x:.2}")
    } else {
        format!("> {}", ROUND_BOUND.as_secs())
    }
}

fn render(opts: &Opts, rounds: &[Round]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### Failover: primary stopped, standby promoted, under transfer load\n\n\
         {} round(s), each on a fresh private primary and a streaming standby of it, {ACCOUNTS} \
         accounts. One demo server on `postgres://…@<standby>,<primary>/postgres?target_session_attrs=read-write` \
         (the standby listed first), every other setting at its default. {CLIENTS} client tasks \
         each POST `/api/transfers` between random accounts with a fresh `Idempotency-Key`, one at \
         a time, {} ms apart after an answer other than 201 (not waiting for `Retry-After`). \
         After {} s the primary is stopped (`pg_ctl stop -m fast`), then the standby promoted \
         (`pg_ctl promote -w`, until a new session sees it out of recovery); the load runs {} s \
         past the first write on the new primary. A round with no write within {} s of the \
         stop counts as failed (`> {}` below). Promotion → first write is negative when the \
         demo wrote on the new primary before `promote()` returned (it also waits for a new \
         session to see the server out of recovery).\n",
        opts.rounds,
        PAUSE.as_millis(),
        BEFORE.as_secs(),
        AFTER.as_secs(),
        ROUND_BOUND.as_secs(),
        ROUND_BOUND.as_secs(),
    );
    let _ = writeln!(
        out,
        "| round | stop → first write (s) | promotion → first write (s) | 503 answers meanwhile | \
         other non-2xx | pg_ctl stop (s) | promote (s) | acknowledged | slowest answer (s) |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let inf = |x: Option<f64>| x.unwrap_or(f64::INFINITY);
    for (i, r) in rounds.iter().enumerate() {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {:.2} | {:.2} | {} | {:.2} |",
            i + 1,
            secs(inf(r.stop_to_write)),
            secs(inf(r.promotion_to_write)),
            r.n503,
            r.other_total(),
            r.stop_took,
            r.promote_took,
            r.acknowledged,
            r.slowest,
        );
    }
    let med = |f: &dyn Fn(&Round) -> f64| median(rounds.iter().map(f).collect());
    let promotion_median = med(&|r| inf(r.promotion_to_write));
    let _ = writeln!(
        out,
        "| **median** | {} | {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.0} | {:.2} |\n",
        secs(med(&|r| inf(r.stop_to_write))),
        secs(promotion_median),
        med(&|r| r.n503 as f64),
        med(&|r| r.other_total() as f64),
        med(&|r| r.stop_took),
        med(&|r| r.promote_took),
        med(&|r| r.acknowledged as f64),
        med(&|r| r.slowest),
    );
    let met = promotion_median <= TARGET_S;
    let _ = writeln!(
        out,
        "target: writes back within {TARGET_S:.0} s of promotion (median): {} s, **{}**.\n",
        secs(promotion_median),
        if met { "met" } else { "NOT met" }
    );
    for (i, r) in rounds.iter().enumerate() {
        if let Some(why) = &r.failed {
            let _ = writeln!(out, "**Round {} failed**: {why}\n", i + 1);
        }
        if r.other_total() > 0 {
            let _ = writeln!(
                out,
                "**Round {}: UNEXPECTED answers (neither 201 nor 503): {}.**\n",
                i + 1,
                breakdown(&r.other)
            );
        }
        if r.unknown > 0 {
            let _ = writeln!(
                out,
                "Round {}: {} transfer(s) answered 504 `{UNKNOWN}`; sent again with the same \
                 key (as the demo asks): {} had committed (answered as a replay), {} had not \
                 (created by the retry), {} unsettled after {} s.\n",
                i + 1,
                r.unknown,
                r.unknown_committed,
                r.unknown_not_committed,
                r.unknown
                    .saturating_sub(r.unknown_committed + r.unknown_not_committed),
                SETTLE.as_secs()
            );
        }
        if r.n503_outside > 0 || r.n503_bare > 0 {
            let _ = writeln!(
                out,
                "Round {}: {} answers 503 outside the switchover, {} without `Retry-After`.\n",
                i + 1,
                r.n503_outside,
                r.n503_bare
            );
        }
    }
    let _ = writeln!(
        out,
        "Single-host check: the pool-level read with a single-host URL is the Pool section's \
         `DbService (our defaults)` row (`--only pool`); its ratio against the previous run \
         (target ≥ 0.97) is compared by hand in BENCHMARKS.md, not measured here.\n"
    );
    out
}

/// `GET /health/db`'s `hosts` object, compact, for the log.
fn hosts_of(port: u16) -> String {
    let body = http::http_body(port, "/health/db").unwrap_or_default();
    serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .map(|v| v["hosts"].to_string())
        .unwrap_or_else(|| format!("(no JSON from /health/db: {body:.200})"))
}

/// The server log's lines about hosts (every one), and the first few others at WARN or
/// ERROR (a count of the rest).
fn log_excerpt(log: &Path) -> Vec<String> {
    const OTHERS: usize = 6;
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut lines = Vec::new();
    let mut others = 0;
    for l in text.lines() {
        if l.contains("dbservice::pool::topology") {
            lines.push(l.to_owned());
        } else if l.contains(" WARN ") || l.contains(" ERROR ") {
            others += 1;
            if others <= OTHERS {
                lines.push(l.to_owned());
            }
        }
    }
    if others > OTHERS {
        lines.push(format!(
            "... and {} more lines at WARN or ERROR",
            others - OTHERS
        ));
    }
    lines
}

/// Runs `f` on a blocking thread within `bound`: its result, or why it gave none (a panic's
/// message, or the bound).
async fn blocking<T: Send + 'static>(
    what: &str,
    bound: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    match tokio::time::timeout(bound, tokio::task::spawn_blocking(f)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            let why = e.try_into_panic().ok().and_then(|p| {
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            });
            Err(format!(
                "{what} failed: {}",
                why.unwrap_or_else(|| "cancelled".into())
            ))
        }
        Err(_) => Err(format!("{what} did not finish within {bound:?}")),
    }
}

/// One client task: transfers until `running` is cleared.
async fn client(
    client: reqwest::Client,
    base: String,
    round: usize,
    task: usize,
    running: Arc<AtomicBool>,
    last_write: Arc<Mutex<Option<Instant>>>,
) -> Vec<Answer> {
    let mut rng = fastrand::Rng::new();
    let mut answers = Vec::new();
    let mut n = 0u64;
    // A transfer answered `commit_outcome_unknown`, sent again with its key until settled, as
    // the demo asks (bounded: SETTLE past the end of the load).
    let mut unsettled: Option<(u64, usize, usize)> = None;
    let mut ended: Option<Instant> = None;
    loop {
        if !running.load(Ordering::Relaxed) {
            let at = *ended.get_or_insert_with(Instant::now);
            if unsettled.is_none() || at.elapsed() > SETTLE {
                break;
            }
        }
        let retry = unsettled.is_some();
        let (key_n, from, to) = unsettled.take().unwrap_or_else(|| {
            n += 1;
            let from = rng.usize(1..=ACCOUNTS);
            (n, from, (from + rng.usize(1..ACCOUNTS) - 1) % ACCOUNTS + 1)
        });
        let body = serde_json::json!({
            "from_account_id": from,
            "to_account_id": to,
            "amount_cents": 1,
        });
        let started = Instant::now();
        let res = client
            .post(format!("{base}/api/transfers"))
            .header(
                "Idempotency-Key",
                format!("failover-{}-{round}-{task}-{key_n}", std::process::id()),
            )
            .json(&body)
            .send()
            .await;
        let (status, retry_after, code, replayed) = match res {
            Ok(r) => {
                let retry_after = r.headers().contains_key("retry-after");
                let replayed = r.headers().contains_key("idempotent-replayed");
                let status = r.status().as_u16();
                // Read the body so the connection is reused.
                let body = r.bytes().await.unwrap_or_default();
                let code = (status != 201 && status != 503).then(|| {
                    serde_json::from_slice::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
                        .unwrap_or_else(|| "no error code".into())
                });
                (Ok(status), retry_after, code, replayed)
            }
            Err(e) => (
                Err(if e.is_timeout() {
                    "timeout".to_owned()
                } else if e.is_connect() {
                    "connect error".to_owned()
                } else {
                    format!("transport error ({e})")
                }),
                false,
                None,
                false,
            ),
        };
        let done = Instant::now();
        let ok = status == Ok(201);
        if ok && let Ok(mut last) = last_write.lock() {
            *last = Some(last.map_or(done, |l| l.max(done)));
        }
        // Still unknown while there is no primary (503) or the outcome is unknown again.
        if (retry && status == Ok(503)) || code.as_deref() == Some(UNKNOWN) {
            unsettled = Some((key_n, from, to));
        }
        answers.push(Answer {
            done,
            took: done - started,
            status,
            retry_after,
            code,
            settles: (retry && ok).then_some(replayed),
            retry,
        });
        if !ok {
            tokio::time::sleep(PAUSE).await;
        }
    }
    answers
}

async fn run_round(round: usize, dir: &Path) -> Round {
    // A fresh primary with the demo's schema and a few accounts, and a standby of it.
    let primary = Arc::new(
        blocking(
            "the primary's start",
            Duration::from_secs(120),
            PgCluster::start,
        )
        .await
        .expect("a private primary"),
    );
    crate::load(&primary.url("postgres"), ACCOUNTS as i64).await;
    let p = primary.clone();
    let standby = Arc::new(
        blocking("the standby's start", Duration::from_secs(120), move || {
            p.replica()
        })
        .await
        .expect("a streaming standby"),
    );
    let url = dbservice_testkit::multi_host_url(
        &[&standby, &primary],
        "postgres",
        "target_session_attrs=read-write",
    );
    let log: PathBuf = dir.join(format!("failover-demo-{round}.log"));
    let server = tokio::task::block_in_place(|| {
        Server::demo_logged("demo, failover", &url, &[], dir, Some(&log))
    });
    let port = server.port;
    eprintln!(
        "round {round}: failover: demo on primary 127.0.0.1:{} (standby 127.0.0.1:{} listed first); hosts: {}",
        primary.port,
        standby.port,
        tokio::task::block_in_place(|| hosts_of(port))
    );

    let http = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("HTTP client");
    let running = Arc::new(AtomicBool::new(true));
    // When the latest 201 came, so the orchestration sees writes come back.
    let last_write = Arc::new(Mutex::new(None::<Instant>));
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|task| {
            tokio::spawn(client(
                http.clone(),
                format!("http://127.0.0.1:{port}"),
                round,
                task,
                running.clone(),
                last_write.clone(),
            ))
        })
        .collect();

    let mut r = Round::default();
    tokio::time::sleep(BEFORE).await;
    let stop_start = Instant::now();
    let deadline = stop_start + ROUND_BOUND;
    let p = primary.clone();
    let stopped = blocking("pg_ctl stop -m fast", ROUND_BOUND, move || p.stop_server()).await;
    let stop_done = Instant::now();
    r.stop_took = (stop_done - stop_start).as_secs_f64();
    let mut promoted = None;
    match stopped {
        Err(why) => r.failed = Some(why),
        Ok(()) => {
            eprintln!(
                "round {round}: failover: primary stopped in {:.2} s; hosts: {}",
                r.stop_took,
                tokio::task::block_in_place(|| hosts_of(port))
            );
            let s = standby.clone();
            let left = deadline.saturating_duration_since(Instant::now());
            match blocking("the promotion", left, move || s.promote()).await {
                Err(why) => r.failed = Some(why),
                Ok(()) => {
                    let at = Instant::now();
                    r.promote_took = (at - stop_done).as_secs_f64();
                    promoted = Some(at);
                }
            }
        }
    }
    // The load keeps running: wait (bounded) for a 201 received after the stop, which can
    // only come from the new primary; then let the load run a little longer.
    if r.failed.is_none() {
        loop {
            let last = last_write.lock().ok().and_then(|l| *l);
            if last.is_some_and(|l| l >= stop_done) {
                tokio::time::sleep(AFTER).await;
                break;
            }
            if Instant::now() >= deadline {
                r.failed = Some(format!(
                    "no transfer acknowledged within {} s of the stop; /health/ready: {:?}; hosts: {}",
                    ROUND_BOUND.as_secs(),
                    tokio::task::block_in_place(|| http::http_get(port, "/health/ready"))
                        .map(|(s, _)| s),
                    tokio::task::block_in_place(|| hosts_of(port))
                ));
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    running.store(false, Ordering::Relaxed);
    let mut answers = Vec::new();
    for mut t in tasks {
        // A task may still be settling a transfer of unknown outcome (SETTLE, plus a request).
        let bound = SETTLE + REQUEST_TIMEOUT + Duration::from_secs(5);
        let joined = tokio::time::timeout(bound, &mut t).await;
        t.abort();
        match joined {
            Ok(Ok(a)) => answers.extend(a),
            Ok(Err(e)) => {
                *r.other
                    .entry(format!("client task failed ({e})"))
                    .or_default() += 1;
            }
            Err(_) => {
                *r.other.entry("client task hung".into()).or_default() += 1;
            }
        }
    }
    answers.sort_by_key(|a| a.done);
    let first_write = answers
        .iter()
        .find(|a| a.done >= stop_done && a.status == Ok(201))
        .map(|a| a.done);
    if let (Some(w), Some(p)) = (first_write, promoted) {
        r.stop_to_write = Some((w - stop_start).as_secs_f64());
        // Negative when the pool found the new primary before `promote()` returned (it waits
        // until a new session sees the server out of recovery).
        r.promotion_to_write = Some(if w >= p {
            (w - p).as_secs_f64()
        } else {
            -(p - w).as_secs_f64()
        });
    }
    let window_end = first_write.unwrap_or(deadline);
    for a in &answers {
        r.slowest = r.slowest.max(a.took.as_secs_f64());
        match a.settles {
            Some(true) => r.unknown_committed += 1,
            Some(false) => r.unknown_not_committed += 1,
            None => {}
        }
        match &a.status {
            Ok(201) => r.acknowledged += 1,
            Ok(503) => {
                if a.done >= stop_start && a.done <= window_end {
                    r.n503 += 1;
                } else {
                    r.n503_outside += 1;
                }
                if !a.retry_after {
                    r.n503_bare += 1;
                }
            }
            Ok(s) => {
                let code = a.code.as_deref().unwrap_or_default();
                r.unknown += u64::from(code == UNKNOWN && !a.retry);
                *r.other.entry(format!("HTTP {s} {code}")).or_default() += 1;
            }
            Err(e) => *r.other.entry(e.clone()).or_default() += 1,
        }
    }
    eprintln!(
        "round {round}: failover: after: hosts: {}",
        tokio::task::block_in_place(|| hosts_of(port))
    );
    for line in log_excerpt(&log) {
        eprintln!("round {round}: failover: server log: {line}");
    }
    if let Some(why) = &r.failed {
        eprintln!("!!! round {round}: failover FAILED: {why}");
    }
    drop(server);
    let _ = blocking("the clusters' stop", Duration::from_secs(120), move || {
        drop(standby);
        drop(primary);
    })
    .await;
    r
}
