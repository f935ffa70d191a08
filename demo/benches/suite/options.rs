//! The suite's command-line options.

pub(crate) struct Opts {
    pub(crate) rounds: usize,
    pub(crate) seconds: u64,
    pub(crate) grid_seconds: u64,
    pub(crate) quick: bool,
    pub(crate) full_grid: bool,
    pub(crate) only: Option<Vec<String>>,
    /// Indices of the pool-level read variants to run (`--variants 0,4`; default all), e.g.
    /// to profile one of them alone.
    pub(crate) variants: Option<Vec<usize>>,
}

impl Opts {
    pub(crate) fn parse(args: &[String]) -> Opts {
        let quick = args.iter().any(|a| a == "--quick");
        let value = |flag: &str| {
            args.iter()
                .position(|a| a == flag)
                .and_then(|i| args.get(i + 1))
                .cloned()
        };
        let number = |flag: &str, default: u64| {
            value(flag).map_or(default, |v| {
                v.parse().unwrap_or_else(|_| {
                    eprintln!("bench: {flag} expects a whole number, got {v:?}");
                    std::process::exit(2)
                })
            })
        };
        let (rounds, seconds) = if quick { (1, 2) } else { (3, 10) };
        Opts {
            rounds: number("--rounds", rounds) as usize,
            seconds: number("--seconds", seconds),
            grid_seconds: if quick { 1 } else { 5 },
            quick,
            full_grid: args.iter().any(|a| a == "--full-grid"),
            only: value("--only").map(|v| v.split(',').map(str::to_owned).collect()),
            variants: value("--variants").map(|v| {
                v.split(',')
                    .map(|i| {
                        i.trim().parse().unwrap_or_else(|_| {
                            eprintln!("bench: --variants expects indices such as 0,4, got {v:?}");
                            std::process::exit(2)
                        })
                    })
                    .collect()
            }),
        }
    }

    /// Whether the read variant `i` runs.
    pub(crate) fn runs_variant(&self, i: usize) -> bool {
        self.variants.as_ref().is_none_or(|v| v.contains(&i))
    }

    pub(crate) fn runs(&self, section: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|s| s == section))
    }
}
