//! Health answers, free of any web framework: [`live`], [`ready`] and [`details`] each return
//! a [`HealthReport`] (status code, headers, JSON body) that any framework serves as is; the
//! actix wing (feature `actix`) mounts them as `http::health`. With named pools, pass the
//! [`Pools`]: `details` then lists every pool and `ready` fails for a failing *required* pool,
//! naming it.
//!
//! - `GET /health/live`: 200 while the process serves HTTP. Never touches the database, so a
//!   database outage does not make Kubernetes restart healthy pods.
//! - `GET /health/ready`: 200 (`pass`/`warn`) when the service is started, not shutting down,
//!   and the database answers within `health_check_timeout`; 503 (`fail`) otherwise. A pool
//!   whose every connection is busy is `warn` (200): the database is fine, we are just busy.
//! - `GET /health/db`: details for humans: phase, redacted configuration, pool statistics,
//!   an alert level from utilization (`ok`, `warn` at `utilization_warn_percent`, `critical` at
//!   `utilization_critical_percent`), and the last error (redacted) with its time.
//!
//! Bodies follow the IETF *Health Check Response Format for HTTP APIs* draft
//! (`application/health+json`). `/health/ready` says pass/warn/fail with the pool figures but
//! no error text (host, user and database names can be in it) unless a [`HealthOptions`] with
//! `details: true` is given; `/health/db` always has the (redacted) details, so serve it on a
//! management listener.

use std::time::SystemTime;

use serde_json::json;

use crate::endpoint::{Phase, PingError};
use crate::named::Pools;
use crate::service::{DbService, Readiness};
use crate::stats::PoolStats;
use crate::time::rfc3339;

/// What the health endpoints reveal (with actix, in the app data: `web::Data<HealthOptions>`;
/// without one, the defaults apply).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HealthOptions {
    /// `/health/ready` includes the last error's text (redacted of passwords, but with host,
    /// user and database names). Default: false.
    pub details: bool,
}

impl HealthOptions {
    /// Options with `details` set as given.
    pub fn with_details(details: bool) -> Self {
        Self { details }
    }
}

/// The media type of the health bodies (IETF *Health Check Response Format for HTTP APIs*).
pub const CONTENT_TYPE: &str = "application/health+json";

/// 200: pass or warn.
const OK: u16 = 200;
/// 503: fail.
const SERVICE_UNAVAILABLE: u16 = 503;

/// A health answer: the HTTP status, the JSON body, and the headers to send with it.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthReport {
    /// 200 (`pass`/`warn`) or 503 (`fail`).
    pub status: u16,
    /// The `application/health+json` body.
    pub body: serde_json::Value,
}

impl HealthReport {
    fn new(status: u16, body: serde_json::Value) -> Self {
        Self { status, body }
    }

    /// The response headers: the content type, `Cache-Control: no-store` (a cached answer
    /// would hide a change), and `Retry-After: 1` on a 503.
    pub fn headers(&self) -> Vec<(&'static str, &'static str)> {
        let mut headers = vec![
            ("content-type", CONTENT_TYPE),
            ("cache-control", "no-store"),
        ];
        if self.status == SERVICE_UNAVAILABLE {
            headers.push(("retry-after", "1"));
        }
        headers
    }
}

/// `GET /health/live`: always `pass`; never touches the database.
pub fn live() -> HealthReport {
    HealthReport::new(OK, json!({ "status": "pass" }))
}
fn pool_check(stats: &PoolStats, status: &str, now: &str) -> serde_json::Value {
    json!([{
        "componentType": "datastore",
        "observedValue": stats,
        "observedUnit": "connections",
        "status": status,
        "time": now,
    }])
}

/// `GET /health/ready`: `pass`/`warn` (200) when `db` is started, not shutting down, and the
/// database answers within `health_check_timeout`; `fail` (503) otherwise, or when a required
/// pool of `pools` fails.
pub async fn ready(db: &DbService, pools: Option<&Pools>, opts: HealthOptions) -> HealthReport {
    let show = opts.details;
    let now = rfc3339::format(SystemTime::now());
    let phase = db.phase();
    if phase != Phase::Ready {
        let stats = db.stats();
        let last = db.last_error().map(|e| e.message).filter(|_| show);
        let why = match (phase, last) {
            (Phase::Starting, Some(cause)) => {
                format!("starting: database not reachable yet: {cause}")
            }
            (Phase::Starting, None) => "starting: connecting to the database".to_owned(),
            (Phase::Failed, Some(cause)) => format!("startup failed: {cause}"),
            (Phase::Failed, None) => "startup failed; see the log or /health/db".to_owned(),
            _ => "shutting down".to_owned(),
        };
        return HealthReport::new(
            SERVICE_UNAVAILABLE,
            json!({
                "status": "fail",
                "output": why,
                "checks": { "database:connections": pool_check(&stats, "fail", &now) },
            }),
        );
    }

    // One check shared by concurrent probes; on a saturated pool it asks the database on a
    // connection of its own. Answers → busy, not broken (`warn`).
    let Readiness {
        result,
        saturated,
        server_full,
    } = db.readiness().await;
    let stats = db.stats();
    let (status, code, output, response_ms) = match result {
        // Full, not down: the open connections serve, so this instance stays in rotation.
        Ok(rtt) if server_full.is_some() => (
            "warn",
            OK,
            Some(match server_full.filter(|_| show) {
                Some(cause) => cause,
                None => "database server full: it refuses new connections (too many \
                         connections); serving on the open ones"
                    .to_owned(),
            }),
            Some(rtt.as_secs_f64() * 1000.0),
        ),
        Ok(rtt) if saturated || stats.is_saturated() => (
            "warn",
            OK,
            Some(format!(
                "pool saturated: all {} connections busy",
                stats.max
            )),
            Some(rtt.as_secs_f64() * 1000.0),
        ),
        Ok(rtt) => ("pass", OK, None, Some(rtt.as_secs_f64() * 1000.0)),
        Err(PingError::TimedOut(bound)) => (
            "fail",
            SERVICE_UNAVAILABLE,
            Some(format!("database unreachable: no answer within {bound:?}")),
            None,
        ),
        Err(e) => (
            "fail",
            SERVICE_UNAVAILABLE,
            Some(if show {
                format!("database unreachable: {e}")
            } else {
                "database unreachable; see the log or /health/db".to_owned()
            }),
            None,
        ),
    };
    let mut body = json!({
        "status": status,
        "checks": {
            "database:responseTime": [{
                "componentType": "datastore",
                "observedValue": response_ms,
                "observedUnit": "ms",
                "status": status,
                "time": now,
            }],
            "database:connections": pool_check(&stats, status, &now),
            "database:utilization": [{
                "componentType": "datastore",
                "observedValue": stats.utilization() * 100.0,
                "observedUnit": "percent",
                "status": status,
                "time": now,
            }],
        },
    });
    if let Some(output) = output {
        body["output"] = json!(output);
    }
    let (mut code, mut status) = (code, status);
    // Named pools (with the `Pools`): a required one that fails fails readiness
    // and is named; an optional one only shows as `warn` in its own check.
    if let Some(pools) = pools {
        // Checked concurrently: each check is bounded by its pool's health_check_timeout, and
        // readiness must not take the sum of them.
        let named: Vec<_> = pools.iter().skip(1).collect();
        let failing = futures_util::future::join_all(named.iter().map(|(_, other, _)| async {
            other.phase() != Phase::Ready || other.readiness().await.result.is_err()
        }))
        .await;
        for ((name, other, required), failing) in named.into_iter().zip(failing) {
            let verdict = match (failing, required) {
                (false, _) => "pass",
                (true, true) => "fail",
                (true, false) => "warn",
            };
            body["checks"][format!("database:pool:{name}")] = json!([{
                "componentType": "datastore",
                "observedValue": other.stats(),
                "observedUnit": "connections",
                "status": verdict,
                "time": now,
                "required": required,
            }]);
            if failing && required && status != "fail" {
                status = "fail";
                code = SERVICE_UNAVAILABLE;
                body["output"] = json!(format!("required pool `{name}` is failing"));
            } else if failing && status == "pass" {
                status = "warn";
            }
        }
        body["status"] = json!(status);
    }
    HealthReport::new(code, body)
}

/// `GET /health/db`: phase, redacted configuration, pool statistics, alert level, last error
/// (of every pool of `pools` too). Serve it where only operators reach it.
pub fn details(db: &DbService, pools: Option<&Pools>) -> HealthReport {
    let mut body = pool_details(db);
    // With the `Pools`, every named pool too, under `pools`.
    if let Some(pools) = pools {
        let mut named = serde_json::Map::new();
        for (name, other, required) in pools.iter().skip(1) {
            let mut d = pool_details(other);
            d["required"] = json!(required);
            named.insert(name.to_owned(), d);
        }
        body["pools"] = serde_json::Value::Object(named);
    }
    HealthReport::new(OK, body)
}

/// One pool's details: phase, statistics, alert level, redacted configuration, last error.
fn pool_details(db: &DbService) -> serde_json::Value {
    let phase = db.phase();
    let stats = db.stats();
    let cfg = db.config().pool();
    let percent = stats.utilization() * 100.0;
    let level = if percent >= f64::from(cfg.monitoring.utilization_critical_percent) {
        "critical"
    } else if percent >= f64::from(cfg.monitoring.utilization_warn_percent) {
        "warn"
    } else {
        "ok"
    };
    let server_full = db.pool().server_full();
    let status = match phase {
        Phase::Ready if level != "ok" || server_full.is_some() => "warn",
        Phase::Ready => "pass",
        _ => "fail",
    };
    let mut body = json!({
        "status": status,
        "phase": phase,
        "backend": db.backend(),
        "pool": stats,
        "alert": {
            "level": level,
            "utilization_percent": percent,
            "warn_percent": cfg.monitoring.utilization_warn_percent,
            "critical_percent": cfg.monitoring.utilization_critical_percent,
        },
        "alerts": db.alerts(),
        "config": db.config(),
        "last_error": db.last_error(),
        "server_full": server_full,
        // Session contexts: whether one is required, the names served (never values), and
        // the work refused for want of one.
        "context": {
            "required": cfg.session.require_context,
            "names": db.context_names(),
            "refused": stats.context_refused,
        },
        "time": rfc3339::format(SystemTime::now()),
    });
    // Which host each pool is on, and what the others were found to be.
    if let Some(hosts) = db.hosts() {
        body["hosts"] = json!(hosts);
    }
    // Read replicas: where reads went, and each replica's rotation, lag and own pool. They
    // never fail readiness: reads fall back to the primary.
    if let Some(replicas) = db.replica_stats() {
        let mut shown = json!(replicas);
        let services = db.replica_services();
        if let Some(list) = shown["replicas"].as_array_mut() {
            for (entry, (_, replica)) in list.iter_mut().zip(services) {
                entry["pool"] = json!(replica.stats());
                entry["hosts"] = json!(replica.hosts());
                entry["last_error"] = json!(replica.last_error());
            }
        }
        body["replicas"] = shown;
    }
    body
}
