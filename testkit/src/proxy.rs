//! A small fault-injecting TCP proxy between the service and the database (tokio): latency,
//! blackhole (data silently discarded, sockets left open, as with a dead route) and reset
//! (every connection closed with RST), on command, without touching the server. It can also be
//! pointed at another server (`switch_to`), as when the host behind a URL is replaced.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug)]
struct State {
    delay_us: AtomicU64,
    blackhole: AtomicBool,
    /// `host:port` new connections go to.
    upstream: Mutex<String>,
}

/// A running proxy; stops when dropped.
pub struct FaultProxy {
    /// The database URL with host and port replaced by the proxy's.
    pub url: String,
    state: Arc<State>,
    resets: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

/// The proxy with a fixed delay, for tests that only need latency.
pub type DelayProxy = FaultProxy;

impl FaultProxy {
    /// Proxies to the host and port of `url`, delaying each chunk of data by `delay`.
    pub async fn start(url: &str, delay: Duration) -> Self {
        let mut parsed = url::Url::parse(url).expect("database URL");
        let upstream = host_port(&parsed);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        parsed.set_port(Some(port)).expect("set port");
        let state = Arc::new(State {
            delay_us: AtomicU64::new(u64::try_from(delay.as_micros()).unwrap_or(u64::MAX)),
            blackhole: AtomicBool::new(false),
            upstream: Mutex::new(upstream),
        });
        let (resets, _) = watch::channel(0u64);
        let task = {
            let (state, resets) = (state.clone(), resets.clone());
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let state = state.clone();
                    let upstream = state.upstream.lock().expect("upstream").clone();
                    let mut reset = resets.subscribe();
                    tokio::spawn(async move {
                        let Ok(server) = TcpStream::connect(&upstream).await else {
                            return;
                        };
                        // Closing with linger 0 sends RST: used by `reset`, harmless otherwise.
                        let _ = client.set_zero_linger();
                        let (cr, cw) = client.into_split();
                        let (sr, sw) = server.into_split();
                        tokio::select! {
                            _ = async { tokio::join!(pipe(cr, sw, &state), pipe(sr, cw, &state)) } => {}
                            _ = reset.changed() => {}
                        }
                    });
                }
            })
        };
        Self {
            url: parsed.to_string(),
            state,
            resets,
            task,
        }
    }

    /// Starts or stops discarding all data in both directions (connections stay open).
    pub fn blackhole(&self, on: bool) {
        self.state.blackhole.store(on, Ordering::SeqCst);
    }

    /// Sends new connections to the host and port of `url` from now on (current ones stay
    /// where they are until [`reset_all`](Self::reset_all)).
    pub fn switch_to(&self, url: &str) {
        let parsed = url::Url::parse(url).expect("database URL");
        *self.state.upstream.lock().expect("upstream") = host_port(&parsed);
    }

    /// Closes every current connection with a TCP reset.
    pub fn reset_all(&self) {
        self.resets.send_modify(|n| *n += 1);
    }
}

fn host_port(url: &url::Url) -> String {
    format!(
        "{}:{}",
        url.host_str().expect("host"),
        url.port().expect("explicit port")
    )
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    state: &State,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if state.blackhole.load(Ordering::SeqCst) {
                    continue;
                }
                let delay = state.delay_us.load(Ordering::Relaxed);
                if delay > 0 {
                    tokio::time::sleep(Duration::from_micros(delay)).await;
                }
                if to.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown().await;
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
