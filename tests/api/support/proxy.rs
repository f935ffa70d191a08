//! A small TCP proxy between the service and the database that delays every chunk of data in
//! both directions: it widens timing windows (e.g. a BEGIN in flight) without touching the
//! server.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A running proxy; stops when dropped.
pub struct DelayProxy {
    /// `url` with host and port replaced by the proxy's.
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl DelayProxy {
    /// Proxies to the host and port of `url`, delaying each chunk by `delay`.
    pub async fn start(url: &str, delay: Duration) -> Self {
        let mut parsed = url::Url::parse(url).expect("database URL");
        let upstream = format!(
            "{}:{}",
            parsed.host_str().expect("host"),
            parsed.port().expect("explicit port")
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        parsed.set_port(Some(port)).expect("set port");
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::join!(pipe(cr, sw, delay), pipe(sr, cw, delay));
                });
            }
        });
        Self {
            url: parsed.to_string(),
            task,
        }
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                tokio::time::sleep(delay).await;
                if to.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown().await;
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
