//! The export's settings: the `OTEL_*` variables read and checked (see the parent module's
//! table), so that a mistake is a startup error naming the variable.

use std::collections::HashMap;

use super::DEFAULT_SERVICE_NAME;

/// The samplers the SDK implements (`OTEL_TRACES_SAMPLER`).
const SAMPLERS: &[&str] = &[
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
];

/// Variables the SDK reads as whole milliseconds (or counts), ignoring a value that does not
/// parse; checked here so that it is an error instead.
const NUMBERS: &[&str] = &[
    "OTEL_BSP_SCHEDULE_DELAY",
    "OTEL_BSP_EXPORT_TIMEOUT",
    "OTEL_BSP_MAX_QUEUE_SIZE",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
    "OTEL_METRIC_EXPORT_INTERVAL",
    "OTEL_METRIC_EXPORT_TIMEOUT",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT",
];

/// Where and how to export, read from the `OTEL_*` variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSettings {
    /// The URL spans are posted to (`.../v1/traces`), if traces are exported.
    pub traces: Option<Endpoint>,
    /// The URL metrics are posted to (`.../v1/metrics`), if metrics are exported.
    pub metrics: Option<Endpoint>,
    /// The service name to set: [`DEFAULT_SERVICE_NAME`] unless the environment names one
    /// (then `None`, and the SDK reads it).
    pub service_name: Option<String>,
}

/// One signal's destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The full URL.
    pub url: String,
    /// `http/protobuf` or `http/json`.
    pub json: bool,
}

impl std::fmt::Display for Endpoint {
    /// Where to and how, for the startup line: scheme, host and port only (a user part, path or
    /// query could hold a token).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let protocol = if self.json {
            "http/json"
        } else {
            "http/protobuf"
        };
        match url::Url::parse(&self.url) {
            Ok(u) => write!(
                f,
                "{}://{}:{} ({protocol})",
                u.scheme(),
                u.host_str().unwrap_or_default(),
                u.port_or_known_default().unwrap_or_default()
            ),
            Err(_) => write!(f, "(unparsable endpoint) ({protocol})"),
        }
    }
}

impl ExportSettings {
    /// Reads the settings from the process environment; `Ok(None)` when export is off (no
    /// endpoint variable set, or `OTEL_SDK_DISABLED=true`).
    ///
    /// # Errors
    /// A message naming the variable for a malformed endpoint, a `grpc` or unknown protocol,
    /// an unknown sampler or a bad number; and for an `OTEL_*` line in `./.env` that the
    /// environment lacks (the SDK reads the process environment only, so it would be ignored).
    pub fn from_env() -> Result<Option<Self>, String> {
        let env: HashMap<String, String> = std::env::vars().collect();
        refuse_dotenv_lines(&env)?;
        Self::from_map(&env)
    }

    /// Like [`from_env`](Self::from_env), from `env` (variable to value), touching no process
    /// state.
    ///
    /// # Errors
    /// As [`from_env`](Self::from_env), but `.env` is not looked at.
    pub fn from_map(env: &HashMap<String, String>) -> Result<Option<Self>, String> {
        let get = |k: &str| env.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        match get("OTEL_SDK_DISABLED")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("false") => {}
            Some("true") => return Ok(None),
            Some(other) => {
                return Err(format!(
                    "OTEL_SDK_DISABLED=`{other}`: expected `true` or `false`"
                ));
            }
        }
        let base = get("OTEL_EXPORTER_OTLP_ENDPOINT");
        let general = protocol(
            get("OTEL_EXPORTER_OTLP_PROTOCOL"),
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        )?;
        let signal = |name: &str, path: &str| -> Result<Option<Endpoint>, String> {
            let var = format!("OTEL_EXPORTER_OTLP_{name}_ENDPOINT");
            let url = match (get(&var), base) {
                (Some(url), _) => check_url(&var, url)?,
                (None, Some(base)) => {
                    let base = check_url("OTEL_EXPORTER_OTLP_ENDPOINT", base)?;
                    format!("{}/{path}", base.trim_end_matches('/'))
                }
                (None, None) => return Ok(None),
            };
            let var = format!("OTEL_EXPORTER_OTLP_{name}_PROTOCOL");
            let json = protocol(get(&var), &var)?.unwrap_or(general.unwrap_or(false));
            Ok(Some(Endpoint { url, json }))
        };
        let traces = signal("TRACES", "v1/traces")?;
        let metrics = signal("METRICS", "v1/metrics")?;
        if traces.is_none() && metrics.is_none() {
            return Ok(None);
        }
        if let Some(sampler) = get("OTEL_TRACES_SAMPLER") {
            if !SAMPLERS.contains(&sampler) {
                return Err(format!(
                    "OTEL_TRACES_SAMPLER=`{sampler}`: not a sampler this SDK implements; use one of {}",
                    SAMPLERS.join(", ")
                ));
            }
            if let Some(arg) = get("OTEL_TRACES_SAMPLER_ARG")
                && sampler.ends_with("traceidratio")
                && !arg.parse::<f64>().is_ok_and(|r| (0.0..=1.0).contains(&r))
            {
                return Err(format!(
                    "OTEL_TRACES_SAMPLER_ARG=`{arg}`: the ratio of traces kept, from 0 to 1"
                ));
            }
        }
        for var in NUMBERS {
            if let Some(v) = get(var)
                && v.parse::<u64>().is_err()
            {
                return Err(format!(
                    "{var}=`{v}`: expected a whole number (milliseconds for a delay or timeout)"
                ));
            }
        }
        let named = get("OTEL_SERVICE_NAME").is_some()
            || get("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|attrs| {
                attrs.split(',').any(|kv| {
                    kv.split('=')
                        .next()
                        .is_some_and(|k| k.trim() == "service.name")
                })
            });
        Ok(Some(Self {
            traces,
            metrics,
            service_name: (!named).then(|| DEFAULT_SERVICE_NAME.to_owned()),
        }))
    }
}

/// `Some(true)` for `http/json`, `Some(false)` for `http/protobuf`, `None` when unset.
fn protocol(value: Option<&str>, var: &str) -> Result<Option<bool>, String> {
    match value {
        None => Ok(None),
        Some("http/protobuf") => Ok(Some(false)),
        Some("http/json") => Ok(Some(true)),
        Some("grpc") => Err(format!(
            "{var}=`grpc`: this demo is built with the OTLP/HTTP exporter only; use `http/protobuf` \
             (the default) or `http/json`, and the collector's HTTP port (4318)"
        )),
        Some(other) => Err(format!(
            "{var}=`{other}`: expected `http/protobuf` (the default) or `http/json`"
        )),
    }
}

/// Checks that `value` is an `http://host[:port][/path]` URL; returns it.
fn check_url(var: &str, value: &str) -> Result<String, String> {
    // The value is shown only when it carries no user part, query or fragment (any of which
    // could hold a token).
    let shown = if value.contains(['@', '?', '#']) {
        "(value not shown: it has a user part, query or fragment)".to_owned()
    } else {
        format!("`{value}`")
    };
    let url = url::Url::parse(value).map_err(|e| {
        format!("{var}={shown}: not a URL ({e}); expected e.g. http://127.0.0.1:4318")
    })?;
    match url.scheme() {
        "http" => {}
        "https" => {
            return Err(format!(
                "{var}={shown}: this demo's exporter speaks plain HTTP (no TLS); export to a \
                 collector or agent beside it (http://...:4318), which forwards over TLS"
            ));
        }
        other => {
            return Err(format!(
                "{var}={shown}: scheme `{other}` is not supported; expected http://host:port"
            ));
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{var}={shown}: no host"));
    }
    Ok(value.to_owned())
}

/// Refuses `OTEL_*` lines of `./.env` that the process environment lacks: the settings read
/// `.env` into their own view, never into the process environment, where the SDK looks.
fn refuse_dotenv_lines(env: &HashMap<String, String>) -> Result<(), String> {
    let Ok(path) = std::env::current_dir().map(|d| d.join(".env")) else {
        return Ok(());
    };
    if !path.is_file() {
        return Ok(());
    }
    // A malformed `.env` is reported by the settings, which read it first.
    let Ok(iter) = dotenvy::from_path_iter(&path) else {
        return Ok(());
    };
    for (key, _) in iter.flatten() {
        if key.starts_with("OTEL_") && !env.contains_key(&key) {
            return Err(format!(
                "{}: `{key}` is read by the OpenTelemetry SDK from the process environment only, \
                 so this line would be ignored; set it in the environment",
                path.display()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(pairs: &[(&str, &str)]) -> Result<Option<ExportSettings>, String> {
        let env = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        ExportSettings::from_map(&env)
    }

    #[test]
    fn off_without_an_endpoint_or_when_disabled() {
        assert_eq!(read(&[]), Ok(None));
        assert_eq!(read(&[("OTEL_SERVICE_NAME", "x")]), Ok(None));
        assert_eq!(
            read(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
                ("OTEL_SDK_DISABLED", "TRUE")
            ]),
            Ok(None)
        );
    }

    #[test]
    fn base_endpoint_gets_signal_paths_and_signal_endpoints_win() {
        let s = read(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/")])
            .expect("valid")
            .expect("on");
        assert_eq!(s.traces.expect("traces").url, "http://c:4318/v1/traces");
        assert_eq!(s.metrics.expect("metrics").url, "http://c:4318/v1/metrics");
        assert_eq!(s.service_name.as_deref(), Some(DEFAULT_SERVICE_NAME));

        let s = read(&[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:1/custom"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_RESOURCE_ATTRIBUTES", "a=b, service.name=ledger"),
        ])
        .expect("valid")
        .expect("on");
        assert_eq!(
            s.traces,
            Some(Endpoint {
                url: "http://t:1/custom".into(),
                json: true
            })
        );
        assert_eq!(s.metrics, None, "only the signal whose endpoint is set");
        assert_eq!(s.service_name, None, "named by the resource attributes");
    }

    #[test]
    fn refuses_grpc_malformed_endpoints_and_typos_naming_the_variable() {
        let base = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318");
        let e = read(&[base, ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]).expect_err("grpc");
        assert!(
            e.contains("OTEL_EXPORTER_OTLP_PROTOCOL") && e.contains("HTTP"),
            "{e}"
        );
        let e = read(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "127.0.0.1:4318")]).expect_err("no scheme");
        assert!(e.contains("OTEL_EXPORTER_OTLP_ENDPOINT"), "{e}");
        let e = read(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://u:tok@:1")]).expect_err("no host");
        assert!(!e.contains("tok"), "{e}");
        let e = read(&[(
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
            "https://h/v1/metrics",
        )])
        .expect_err("https");
        assert!(e.contains("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"), "{e}");
        let e = read(&[base, ("OTEL_TRACES_SAMPLER", "always")]).expect_err("sampler");
        assert!(e.contains("OTEL_TRACES_SAMPLER") && e.contains("parentbased_always_on"));
        let e = read(&[
            base,
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "2"),
        ])
        .expect_err("ratio");
        assert!(e.contains("OTEL_TRACES_SAMPLER_ARG"), "{e}");
        let e = read(&[base, ("OTEL_BSP_SCHEDULE_DELAY", "1s")]).expect_err("number");
        assert!(e.contains("OTEL_BSP_SCHEDULE_DELAY"), "{e}");
        let e = read(&[base, ("OTEL_SDK_DISABLED", "yes")]).expect_err("bool");
        assert!(e.contains("OTEL_SDK_DISABLED"), "{e}");
    }
}
