//! Alerts that are emitted, not only computed: pool utilisation (80 % / 90 % by default),
//! callers waiting (more than 5) and database errors per hour (more than 10), checked every
//! second while the service is ready. Each crossing logs one line (WARN for `warn`, ERROR for
//! `critical`, INFO when it clears) and counts in `dbservice_alerts_total{alert,level}`; the
//! current level of each is in `/health/db`.
//!
//! Hysteresis: a level is left only when the value falls clearly below it (utilisation 10
//! points under the level, waiting and errors at half the threshold), so a value hovering at
//! a threshold raises one alert, not one per check.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::config::PoolOptions;
use crate::stats::PoolStats;

/// How often the levels are checked.
pub(crate) const CHECK_EVERY: Duration = Duration::from_secs(1);

/// An alert's level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Below the thresholds.
    Ok,
    /// Past the warning threshold.
    Warn,
    /// Past the critical threshold.
    Critical,
}

impl Level {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Critical => "critical",
        }
    }
}

/// What is watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Alert {
    /// Busy connections / `connection_limit`, in percent.
    Utilization,
    /// Callers waiting for a connection.
    Waiting,
    /// Database errors (constraint violations excepted) in the last hour.
    Errors,
}

impl Alert {
    /// Every alert, in the order of [`AlertStatus`] lists.
    pub const ALL: [Alert; 3] = [Alert::Utilization, Alert::Waiting, Alert::Errors];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Alert::Utilization => "utilization",
            Alert::Waiting => "waiting",
            Alert::Errors => "errors",
        }
    }
}

/// One alert's current state, as `/health/db` shows it.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct AlertStatus {
    /// Which alert.
    pub alert: Alert,
    /// Its current level.
    pub level: Level,
    /// The value at the last check.
    pub value: f64,
    /// The warning threshold (`None`: this alert has no warning level, or is off).
    pub warn_at: Option<f64>,
    /// The critical threshold (`None`: none).
    pub critical_at: Option<f64>,
    /// Since when it has been at this level (`None`: never left `ok`).
    #[serde(with = "crate::time::rfc3339_opt")]
    pub since: Option<SystemTime>,
    /// How many times it was raised (to `warn` or `critical`).
    pub raised: u64,
}

/// Thresholds of one alert: raise at `warn`/`critical`, clear below `clear_*`.
#[derive(Debug, Clone, Copy)]
struct Thresholds {
    warn: Option<f64>,
    critical: Option<f64>,
    /// How far below a level the value must fall to leave it.
    margin: fn(f64) -> f64,
}

impl Thresholds {
    /// The level for `value`, given the current one (hysteresis on the way down).
    fn level(&self, value: f64, current: Level) -> Level {
        let at = |t: Option<f64>| t.is_some_and(|t| value >= t);
        let above_clear = |t: Option<f64>| t.is_some_and(|t| value >= (self.margin)(t));
        let raised = if at(self.critical) {
            Level::Critical
        } else if at(self.warn) {
            Level::Warn
        } else {
            Level::Ok
        };
        let held = match current {
            Level::Critical if above_clear(self.critical) => Level::Critical,
            Level::Critical | Level::Warn if above_clear(self.warn) => Level::Warn,
            // A critical-only alert falling out of critical.
            _ => Level::Ok,
        };
        raised.max(held)
    }
}

#[derive(Debug, Clone, Copy)]
struct State {
    level: Level,
    value: f64,
    since: Option<SystemTime>,
}

/// The alerts of one service.
#[derive(Debug)]
pub(crate) struct Alerts {
    states: Mutex<[State; 3]>,
    /// Raised, per alert, per level (warn, critical).
    raised: [[AtomicU64; 2]; 3],
    /// (when, errors so far) samples, for the errors of the last hour.
    errors: Mutex<VecDeque<(Instant, u64)>>,
}

impl Default for Alerts {
    fn default() -> Self {
        let ok = State {
            level: Level::Ok,
            value: 0.0,
            since: None,
        };
        Self {
            states: Mutex::new([ok; 3]),
            raised: Default::default(),
            errors: Mutex::new(VecDeque::new()),
        }
    }
}

fn thresholds(alert: Alert, p: &PoolOptions) -> Thresholds {
    let count = |n: u32| (n > 0).then_some(f64::from(n));
    match alert {
        Alert::Utilization => Thresholds {
            warn: Some(f64::from(p.monitoring.utilization_warn_percent)),
            critical: Some(f64::from(p.monitoring.utilization_critical_percent)),
            margin: |t| t - 10.0,
        },
        // More than N waiting: raised at N + 1.
        Alert::Waiting => Thresholds {
            warn: count(p.monitoring.alert_waiting).map(|n| n + 1.0),
            critical: None,
            margin: |t| (t / 2.0).max(1.0),
        },
        Alert::Errors => Thresholds {
            warn: count(p.monitoring.alert_errors_per_hour).map(|n| n + 1.0),
            critical: None,
            margin: |t| (t / 2.0).max(1.0),
        },
    }
}

/// Database errors so far, constraint violations (the client's input) excepted.
fn errors_so_far(s: &PoolStats) -> u64 {
    let e = s.errors;
    e.pool_timeout
        + e.query_timeout
        + e.pool_closed
        + e.connection
        + e.statement_timeout
        + e.serialization
        + e.query
}

impl Alerts {
    /// Errors within the last hour, from samples taken at each check.
    fn errors_last_hour(&self, total: u64, now: Instant) -> u64 {
        let Ok(mut samples) = self.errors.lock() else {
            return 0;
        };
        let hour = Duration::from_secs(3600);
        while samples
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) > hour)
        {
            samples.pop_front();
        }
        // One sample per 10 s is enough for an hourly count.
        if samples
            .back()
            .is_none_or(|(at, _)| now.saturating_duration_since(*at) >= Duration::from_secs(10))
        {
            samples.push_back((now, total));
        }
        let oldest = samples.front().map_or(total, |(_, n)| *n);
        total.saturating_sub(oldest)
    }

    /// One check: new levels from `stats`, one log line per change.
    pub fn check(&self, pool: &str, stats: &PoolStats, p: &PoolOptions) {
        let errors = self.errors_last_hour(errors_so_far(stats), Instant::now());
        let values = [
            stats.utilization() * 100.0,
            stats.waiting as f64,
            errors as f64,
        ];
        let Ok(mut states) = self.states.lock() else {
            return;
        };
        for (i, alert) in Alert::ALL.into_iter().enumerate() {
            let (Some(state), Some(&value)) = (states.get_mut(i), values.get(i)) else {
                continue;
            };
            let t = thresholds(alert, p);
            let level = t.level(value, state.level);
            state.value = value;
            if level == state.level {
                continue;
            }
            let threshold = match level {
                Level::Critical => t.critical,
                Level::Warn => t.warn,
                Level::Ok => None,
            };
            let name = alert.label();
            match level {
                Level::Critical => tracing::error!(
                    target: "dbservice::alerts", pool, alert = name, alert_level = "critical", value,
                    threshold, "pool alert: {name} at {value} (critical at {})", threshold.unwrap_or_default()
                ),
                Level::Warn => tracing::warn!(
                    target: "dbservice::alerts", pool, alert = name, alert_level = "warn", value,
                    threshold, "pool alert: {name} at {value} (warning at {})", threshold.unwrap_or_default()
                ),
                Level::Ok => tracing::info!(
                    target: "dbservice::alerts", pool, alert = name, alert_level = "ok", value,
                    "pool alert cleared: {name} back to {value}"
                ),
            }
            if level > state.level
                && let Some(slot) = self
                    .raised
                    .get(i)
                    .and_then(|r| r.get(usize::from(level == Level::Critical)))
            {
                slot.fetch_add(1, Ordering::Relaxed);
            }
            state.level = level;
            state.since = Some(SystemTime::now());
        }
    }

    /// Every alert's state.
    pub fn status(&self, p: &PoolOptions) -> Vec<AlertStatus> {
        let states = self.states.lock().map(|s| *s).ok();
        Alert::ALL
            .into_iter()
            .enumerate()
            .filter_map(|(i, alert)| {
                let state = states?.get(i).copied()?;
                let t = thresholds(alert, p);
                let raised = self.raised.get(i)?;
                Some(AlertStatus {
                    alert,
                    level: state.level,
                    value: state.value,
                    warn_at: t.warn,
                    critical_at: t.critical,
                    since: state.since,
                    raised: raised.iter().map(|r| r.load(Ordering::Relaxed)).sum(),
                })
            })
            .collect()
    }

    /// (alert, level, times raised) for `dbservice_alerts_total`.
    pub fn counts(&self) -> Vec<(&'static str, &'static str, u64)> {
        let mut out = Vec::new();
        for (alert, per_level) in Alert::ALL.iter().zip(&self.raised) {
            for (level, n) in [Level::Warn, Level::Critical].iter().zip(per_level) {
                out.push((alert.label(), level.label(), n.load(Ordering::Relaxed)));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_rise_at_thresholds_and_fall_with_hysteresis() {
        let t = thresholds(Alert::Utilization, &PoolOptions::default());
        assert_eq!(t.level(50.0, Level::Ok), Level::Ok);
        assert_eq!(t.level(80.0, Level::Ok), Level::Warn);
        assert_eq!(t.level(95.0, Level::Ok), Level::Critical);
        // Critical holds down to 80, warn down to 70.
        assert_eq!(t.level(85.0, Level::Critical), Level::Critical);
        assert_eq!(t.level(79.0, Level::Critical), Level::Warn);
        assert_eq!(t.level(75.0, Level::Warn), Level::Warn);
        assert_eq!(t.level(69.0, Level::Warn), Level::Ok);
        let w = thresholds(Alert::Waiting, &PoolOptions::default());
        assert_eq!(w.level(5.0, Level::Ok), Level::Ok);
        assert_eq!(w.level(6.0, Level::Ok), Level::Warn);
        assert_eq!(w.level(3.0, Level::Warn), Level::Warn);
        assert_eq!(w.level(2.0, Level::Warn), Level::Ok);
    }
}
