//! The scaling grid: throughput and p99 over concurrency C and pool size N, and its plot.

use super::*;

/// One cell of the scaling grid.
pub(crate) struct Cell {
    pub(crate) variant: usize,
    pub(crate) tasks: usize,
    pub(crate) pool: u32,
    pub(crate) sample: Sample,
}

pub(crate) async fn scaling_grid(opts: &Opts, url: &str) -> Vec<Cell> {
    let all_c = [8usize, 32, 64, 256];
    let cs: &[usize] = if opts.quick { &[8, 64, 256] } else { &all_c };
    let mut plan: Vec<(usize, usize, u32)> = Vec::new();
    // Every variant across concurrency at N = 10 (the plot); ours across pool sizes too.
    for &c in cs {
        for v in 0..crate::pool::TRACED {
            plan.push((v, c, POOL));
        }
    }
    let ns: Vec<u32> = if opts.quick {
        vec![5, 20]
    } else {
        vec![5, 20, 50]
    };
    let variants = if opts.full_grid {
        0..crate::pool::TRACED
    } else {
        0..1
    };
    for &c in if opts.quick {
        &[64usize][..]
    } else {
        &all_c[..]
    } {
        for &n in &ns {
            for v in variants.clone() {
                plan.push((v, c, n));
            }
        }
    }
    let mut cells = Vec::new();
    for (variant, tasks, size) in plan {
        if !pool::available(variant) {
            continue;
        }
        let client = Client::open(variant, url, size).await;
        let sample = pool::run(
            &client,
            Work::Read,
            tasks,
            Duration::from_secs(opts.grid_seconds),
        )
        .await;
        client.close().await;
        eprintln!(
            "grid: {:<36} C={tasks:<4} N={size:<3} {:>8.0} ops/s  p99 {:>7.2} ms",
            READ_VARIANTS[variant], sample.ops_per_sec, sample.p99_ms
        );
        cells.push(Cell {
            variant,
            tasks,
            pool: size,
            sample,
        });
    }
    cells
}

pub(crate) fn write_plot(path: &Path, grid: &[Cell]) -> Result<(), Box<dyn std::error::Error>> {
    let mut lines: Vec<plot::Line> = READ_VARIANTS
        .iter()
        .enumerate()
        .map(|(v, name)| plot::Line {
            name: format!("{name}, N={POOL}"),
            points: grid
                .iter()
                .filter(|c| c.variant == v && c.pool == POOL)
                .map(|c| (c.tasks as u32, c.sample.ops_per_sec, c.sample.p99_ms))
                .collect(),
        })
        .collect();
    let mut sizes: Vec<u32> = grid
        .iter()
        .filter(|c| c.variant == 0)
        .map(|c| c.pool)
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    for n in sizes.into_iter().filter(|n| *n != POOL) {
        let points: Vec<_> = grid
            .iter()
            .filter(|c| c.variant == 0 && c.pool == n)
            .map(|c| (c.tasks as u32, c.sample.ops_per_sec, c.sample.p99_ms))
            .collect();
        if points.len() > 1 {
            lines.push(plot::Line {
                name: format!("{}, N={n}", READ_VARIANTS[0]),
                points,
            });
        }
    }
    lines.retain(|l| !l.points.is_empty());
    plot::write(
        path,
        "Single-row reads by primary key: throughput and p99 against concurrency",
        &lines,
    )
}
