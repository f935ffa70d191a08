//! The Markdown report: the tables, the ratios with their targets, RSS and the grid.

use super::*;

/// The telemetry rows (issue 28): the demo with its defaults (metrics, request log, request
/// spans; no exporter) and exporting over OTLP, each over the demo with all of it off.
const TELEMETRY_DEFAULTS: &str =
    "HTTP GET: telemetry defaults (metrics + request log + spans) / all off";
const TELEMETRY_EXPORTING: &str = "HTTP GET: OTLP export to a local receiver / all off";

pub(crate) struct Report<'a> {
    pub(crate) reads: &'a [Series],
    /// The session context's rows, in [`context::CONTEXT_VARIANTS`]' order (empty: not run).
    pub(crate) contexts: &'a [Series],
    pub(crate) transfers: &'a [Series],
    pub(crate) gets: &'a [Series],
    pub(crate) posts: &'a [Series],
    pub(crate) pgbench16: &'a Series,
    pub(crate) pgbench64: &'a Series,
    pub(crate) pgbench_simple: &'a Series,
    pub(crate) pgbench_bouncer: &'a Series,
    pub(crate) readiness: &'a Sample,
    pub(crate) rss: &'a [(String, Option<f64>)],
    pub(crate) grid: &'a [Cell],
    pub(crate) our_default_size: u32,
}

pub(crate) fn report(opts: &Opts, r: &Report) -> String {
    let limit = r.pgbench16.ops();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} round(s) of {} s per variant, alternating; medians over rounds (max: the worst \
         round); × pgbench 16 = throughput over pgbench's 16-client median. Our default pool \
         size here: {} (cores × 2 + 1).\n",
        opts.rounds, opts.seconds, r.our_default_size
    );
    let table = |s: &mut String, title: &str, rows: &[&Series]| {
        if rows.iter().all(|x| x.rounds.is_empty()) {
            return;
        }
        let _ = writeln!(s, "### {title}\n\n{TABLE_HEAD}");
        for row in rows {
            if !row.rounds.is_empty() {
                let _ = writeln!(s, "{}", row.row(limit));
            }
        }
        let _ = writeln!(s);
    };
    let mut pool_rows: Vec<&Series> = r.reads.iter().collect();
    pool_rows.extend([
        r.pgbench16,
        r.pgbench64,
        r.pgbench_simple,
        r.pgbench_bouncer,
    ]);
    table(
        &mut s,
        &format!("Pool level: single-row read by id, {TASKS} tasks, pool of {POOL}"),
        &pool_rows,
    );
    table(
        &mut s,
        &format!(
            "Pool level: session context, the same read by id back to back, {TASKS} tasks, \
             pool of {POOL}"
        ),
        &r.contexts.iter().collect::<Vec<_>>(),
    );
    table(
        &mut s,
        &format!(
            "Pool level: transfers (read-modify-write transaction), {TASKS} tasks, pool of {POOL}"
        ),
        &r.transfers.iter().collect::<Vec<_>>(),
    );
    table(
        &mut s,
        &format!("HTTP level: wrk, {TASKS} connections, 2 threads"),
        &r.gets.iter().chain(r.posts).collect::<Vec<_>>(),
    );
    if !r.gets.is_empty() {
        let _ = writeln!(
            s,
            "`/health/ready` during the demo's read load (every 50 ms, new connection each): \
             p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {} samples; {} answers other than 200.\n",
            r.readiness.p50_ms,
            r.readiness.p99_ms,
            r.readiness.max_ms,
            r.readiness.ops_per_sec as u64,
            r.readiness.errors
        );
        let _ = writeln!(s, "Peak RSS (VmHWM) after all HTTP rounds:\n");
        for (name, mib) in r.rss {
            let _ = writeln!(
                s,
                "- {name}: {}",
                mib.map_or("n/a".into(), |m| format!("{m:.1} MiB"))
            );
        }
        let _ = writeln!(s);
    }

    // Rows found by their server's name (present or not depending on the set-up).
    let get_of = |server: &str| r.gets.iter().find(|s| s.name.ends_with(server));
    let bouncer = get_of("demo through PgBouncer (pgbouncer=true)");
    let exporting = get_of(http::OTLP_DEMO);
    // (name, numerator, denominator, target): each pair measured in the same rounds.
    let pairs: [(&str, Option<&Series>, Option<&Series>, &str); 25] = [
        (
            "PgBouncer: ours through PgBouncer / the same direct (pgbouncer=true)",
            r.reads.get(6),
            r.reads.get(7),
            "",
        ),
        (
            "PgBouncer: ours pgbouncer=true direct / ours (prepared statements)",
            r.reads.get(7),
            r.reads.first(),
            "",
        ),
        (
            "PgBouncer: ours through PgBouncer / pgbench -M simple through PgBouncer",
            r.reads.get(6),
            Some(r.pgbench_bouncer),
            "",
        ),
        (
            "PgBouncer: pgbench -M simple through PgBouncer / direct",
            Some(r.pgbench_bouncer),
            Some(r.pgbench_simple),
            "",
        ),
        (
            "HTTP GET: demo through PgBouncer / direct",
            bouncer,
            r.gets.first(),
            "",
        ),
        (
            "pool: ours / bare SeaORM configured like ours",
            r.reads.first(),
            r.reads.get(2),
            "≥ 1.4",
        ),
        (
            "pool: ours / bare SeaORM, its defaults",
            r.reads.first(),
            r.reads.get(1),
            "",
        ),
        ("pool: ours / raw sqlx", r.reads.first(), r.reads.get(3), ""),
        (
            "context: with context / without (same DbService)",
            r.contexts.get(context::WITH_CONTEXT),
            r.contexts.get(context::PLAIN),
            "≥ 0.9",
        ),
        (
            "context: pgbouncer=true direct (inlined, no SET LOCAL) / without context",
            r.contexts.get(context::INLINED),
            r.contexts.get(context::PLAIN),
            "",
        ),
        (
            "context: with context (EXECUTE) / pgbouncer=true direct (inlined, re-planned)",
            r.contexts.get(context::WITH_CONTEXT),
            r.contexts.get(context::INLINED),
            "",
        ),
        (
            "pool: max_uses and leak detection on / off",
            r.reads.get(5),
            r.reads.first(),
            "≈ 1.0",
        ),
        (
            "pool: ours / deadpool-postgres (the Rust ceiling)",
            r.reads.first(),
            r.reads.get(4),
            "",
        ),
        (
            "pool: ours / pgbench 16",
            r.reads.first(),
            Some(r.pgbench16),
            "≥ 0.65",
        ),
        (
            "transfers: db.transaction / bare SeaORM like ours",
            r.transfers.first(),
            r.transfers.get(2),
            "≥ 1.0",
        ),
        (
            "transfers: db.transaction / bare SeaORM defaults",
            r.transfers.first(),
            r.transfers.get(1),
            "",
        ),
        (
            "HTTP GET: demo / minimal configured like ours",
            r.gets.first(),
            r.gets.get(3),
            "≥ 0.95",
        ),
        (
            "HTTP GET: demo (our defaults) / minimal (SeaORM defaults)",
            r.gets.first(),
            r.gets.get(2),
            "≥ 1.3",
        ),
        (
            "HTTP GET: demo / pgbench 16",
            r.gets.first(),
            Some(r.pgbench16),
            "≥ 0.30",
        ),
        (TELEMETRY_DEFAULTS, r.gets.first(), r.gets.get(1), "≥ 0.95"),
        (TELEMETRY_EXPORTING, exporting, r.gets.get(1), "≥ 0.90"),
        (
            "pool: spans recorded (tracing-opentelemetry, no exporter) / no subscriber",
            r.reads.get(pool::TRACED),
            r.reads.first(),
            "≥ 0.95",
        ),
        (
            "HTTP GET: demo, half the cores as workers / one per core",
            r.gets.first(),
            r.gets.get(4),
            "",
        ),
        (
            "HTTP POST: demo / minimal configured like ours",
            r.posts.first(),
            r.posts.get(2),
            "≥ 0.95",
        ),
        (
            "HTTP POST: demo / minimal, SeaORM defaults",
            r.posts.first(),
            r.posts.get(1),
            "",
        ),
    ];
    let ratios: Vec<(&str, f64, &str)> = pairs
        .into_iter()
        .filter_map(|(name, a, b, target)| match (a, b) {
            (Some(a), Some(b)) if !a.rounds.is_empty() && !b.rounds.is_empty() => {
                Some((name, paired(a, b), target))
            }
            _ => None,
        })
        .collect();
    if !ratios.is_empty() {
        let _ = writeln!(
            s,
            "### Ratios (paired within each round, median over rounds)\n"
        );
        let _ = writeln!(s, "| ratio | value | target |\n|---|---:|---|");
        for (name, v, target) in &ratios {
            let _ = writeln!(s, "| {name} | {v:.2} | {target} |");
        }
        // The exporting row needs the demo's `otel` feature; say so rather than drop it.
        if cfg!(not(feature = "otel"))
            && ratios.iter().any(|(name, ..)| *name == TELEMETRY_DEFAULTS)
        {
            let _ = writeln!(
                s,
                "| {TELEMETRY_EXPORTING} | n/a (built without otel) | ≥ 0.90 |"
            );
        }
        let _ = writeln!(s);
    }

    if !r.grid.is_empty() {
        let secs = opts.grid_seconds;
        let _ = writeln!(
            s,
            "### Scaling: ops/s and p99 (ms) by concurrent tasks C and pool size N ({secs} s per cell)\n"
        );
        let _ = writeln!(
            s,
            "| variant | N | C | ops/s | p50 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|---:|---:|"
        );
        let mut cells: Vec<&Cell> = r.grid.iter().collect();
        cells.sort_by_key(|c| (c.variant, c.pool, c.tasks));
        for c in cells {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} |",
                READ_VARIANTS[c.variant],
                c.pool,
                c.tasks,
                c.sample.ops_per_sec,
                c.sample.p50_ms,
                c.sample.p99_ms,
                c.sample.max_ms
            );
        }
    }
    s
}
