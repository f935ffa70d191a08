//! The read-heavy mix over HTTP (90 % `GET /api/accounts/{id}`, 10 % `POST /api/transfers`)
//! on the demo without and with a streaming replica of the private cluster, with the split of
//! the reads (replica at once, replica after waiting, primary and why) from the demo's own
//! `/metrics`. On a 2-core machine the replica shares the CPU with the primary: the figures
//! say what read-your-writes costs and how reads split, not what a replica on its own host
//! would add.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use dbservice_testkit::pg_cluster::PgCluster;

use crate::http::{self, DONE_LUA, Server};
use crate::options::Opts;
use crate::pool::ROWS;
use crate::stats::{Series, paired};

/// Where reads went, from `dbservice_replica_reads_total{outcome}`.
const OUTCOMES: [&str; 5] = [
    "replica",
    "replica_after_wait",
    "primary_lagging",
    "primary_unavailable",
    "primary_replica_error",
];

fn reads_by_outcome(port: u16) -> [f64; 5] {
    let text = http::http_body(port, "/metrics").unwrap_or_default();
    OUTCOMES.map(|o| {
        let needle = format!("outcome=\"{o}\"}}");
        text.lines()
            .find(|l| l.starts_with("dbservice_replica_reads_total{") && l.contains(&needle))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0.0)
    })
}

fn write_mix(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("mix.lua");
    std::fs::write(
        &path,
        format!(
            "math.randomseed(os.time())\n\
             local json = {{[\"Content-Type\"] = \"application/json\"}}\n\
             request = function()\n\
               local a = math.random(1, {ROWS})\n\
               if math.random(1, 10) == 1 then\n\
                 local b = a % {ROWS} + 1\n\
                 return wrk.format(\"POST\", \"/api/transfers\", json,\n\
                   string.format('{{\"from_account_id\":%d,\"to_account_id\":%d,\"amount_cents\":1}}', a, b))\n\
               end\n\
               return wrk.format(\"GET\", \"/api/accounts/\" .. a)\n\
             end\n{DONE_LUA}"
        ),
    )
    .expect("write mix.lua");
    path
}

/// Runs the section; returns its Markdown, or a note why it did not run.
pub(crate) async fn section(
    opts: &Opts,
    cluster: Option<&Arc<PgCluster>>,
    url: &str,
    dir: &Path,
    tasks: u32,
) -> String {
    let Some(cluster) = cluster else {
        return "### Read replica\n\nNot run: it needs the private cluster (unset BENCH_DATABASE_URL).\n\n".into();
    };
    let c = cluster.clone();
    let replica = tokio::task::spawn_blocking(move || c.replica())
        .await
        .expect("replica");
    let replica_url = replica.url("postgres");
    let servers = [
        Server::demo("demo, primary only", url, &[], dir),
        Server::demo(
            "demo + 1 replica (read-your-writes)",
            url,
            &[("DATABASE_REPLICA_URLS", replica_url.as_str())],
            dir,
        ),
    ];
    // The replica joins rotation at its first check (replica_check_interval, 1 s).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let script = write_mix(dir);
    let mut series: Vec<Series> = servers
        .iter()
        .map(|s| Series::new(format!("90 % GET / 10 % POST: {}", s.name)))
        .collect();
    let mut split = [0.0f64; 5];
    for round in 1..=opts.rounds {
        for (server, s) in servers.iter().zip(series.iter_mut()) {
            let before = reads_by_outcome(server.port);
            let sample = tokio::task::block_in_place(|| {
                http::wrk(server, "/", &script, tasks, opts.seconds)
            });
            let after = reads_by_outcome(server.port);
            for (total, (a, b)) in split.iter_mut().zip(after.iter().zip(before)) {
                if server.name.contains("replica") {
                    *total += a - b;
                }
            }
            s.rounds.push(sample);
            crate::log(round, s);
        }
    }
    drop(servers);
    drop(replica);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### Read replica: 90 % reads, 10 % transfers over HTTP, wrk {tasks} connections\n\n{}",
        crate::stats::TABLE_HEAD
    );
    for s in &series {
        let _ = writeln!(out, "{}", s.row(0.0));
    }
    let ratio = match series.as_slice() {
        [without, with] => paired(with, without),
        _ => f64::NAN,
    };
    let reads: f64 = split.iter().sum();
    let share = |x: f64| if reads > 0.0 { 100.0 * x / reads } else { 0.0 };
    let _ = writeln!(
        out,
        "\nWith the replica / without: **{ratio:.2}×** (paired by round). The replica shares \
         this machine's 2 cores with the primary, so no speed-up is expected here.\n\n\
         Reads with the replica ({reads:.0} in all): served by the replica at once {:.1} %, \
         after waiting for it to replay {:.1} %; by the primary because the replica had not \
         replayed within replica_wait {:.1} %, because none was available {:.1} %, after a \
         replica error {:.1} %.\n",
        share(split[0]),
        share(split[1]),
        share(split[2]),
        share(split[3]),
        share(split[4]),
    );
    out
}
