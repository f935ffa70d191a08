//! One run's figures, medians over rounds, and the Markdown table.

/// What one run of one variant measured.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    pub ops_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub errors: u64,
    /// CPU time (user + system) the measured process spent per operation, µs; 0: not taken.
    pub cpu_us_per_op: f64,
}

/// CPU time (user + system) of process `pid` so far, in µs (from `/proc/<pid>/stat`).
pub fn cpu_micros(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at state, field 3.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // USER_HZ is 100 on Linux.
    Some(ticks * 10_000.0)
}

impl Sample {
    /// Sets the CPU per operation from a before/after pair of [`cpu_micros`] readings.
    pub fn with_cpu(mut self, before: Option<f64>, after: Option<f64>, elapsed: f64) -> Self {
        let ops = self.ops_per_sec * elapsed;
        if let (Some(b), Some(a)) = (before, after)
            && ops > 0.0
        {
            self.cpu_us_per_op = (a - b) / ops;
        }
        self
    }

    /// Figures from per-operation latencies in microseconds over `elapsed` seconds.
    pub fn from_latencies(mut micros: Vec<u32>, errors: u64, elapsed: f64) -> Self {
        micros.sort_unstable();
        let at = |q: f64| {
            micros
                .get(((micros.len().saturating_sub(1)) as f64 * q) as usize)
                .copied()
                .unwrap_or(0) as f64
                / 1000.0
        };
        Sample {
            ops_per_sec: micros.len() as f64 / elapsed,
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            max_ms: micros.last().copied().unwrap_or(0) as f64 / 1000.0,
            errors,
            cpu_us_per_op: 0.0,
        }
    }
}

/// A variant's samples, one per round.
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub rounds: Vec<Sample>,
}

impl Series {
    pub fn new(name: impl Into<String>) -> Self {
        Series {
            name: name.into(),
            rounds: Vec::new(),
        }
    }

    fn median_of(&self, f: impl Fn(&Sample) -> f64) -> f64 {
        median(self.rounds.iter().map(f).collect())
    }

    pub fn ops(&self) -> f64 {
        self.median_of(|s| s.ops_per_sec)
    }

    pub fn p99(&self) -> f64 {
        self.median_of(|s| s.p99_ms)
    }

    /// A Markdown table row: medians over rounds, the worst max, all errors.
    pub fn row(&self, limit: f64) -> String {
        format!(
            "| {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {} | {} |",
            self.name,
            self.ops(),
            self.median_of(|s| s.p50_ms),
            self.p99(),
            self.rounds.iter().map(|s| s.max_ms).fold(0.0, f64::max),
            self.rounds.iter().map(|s| s.errors).sum::<u64>(),
            if limit > 0.0 {
                format!("{:.2}", self.ops() / limit)
            } else {
                "n/a".into()
            },
            match self.median_of(|s| s.cpu_us_per_op) {
                c if c > 0.0 => format!("{c:.0}"),
                _ => String::new(),
            },
        )
    }
}

/// Ratio of throughputs paired within each round (`a` round k over `b` round k), median over
/// rounds: machine noise that hits a round hits both sides of the ratio.
pub fn paired(a: &Series, b: &Series) -> f64 {
    median(
        a.rounds
            .iter()
            .zip(&b.rounds)
            .filter(|(_, y)| y.ops_per_sec > 0.0)
            .map(|(x, y)| x.ops_per_sec / y.ops_per_sec)
            .collect(),
    )
}

pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub const TABLE_HEAD: &str = "| variant | ops/s | p50 ms | p99 ms | max ms | errors | × pgbench 16 | µs CPU/op |\n\
                              |---|---:|---:|---:|---:|---:|---:|---:|";
