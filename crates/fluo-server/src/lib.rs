//! The async shell around Fluo's engine: the Kurento WebSocket endpoint, configuration,
//! timers, machine readings and graceful shutdown.
//!
//! [`run`] serves on a listener that the caller bound, so tests start a server on
//! `127.0.0.1:0`; `src/bin/fluo.rs` is a thin `main` over it.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
mod core_loop;
mod host;
pub mod tls;
mod ws;

pub use config::Config;
pub use host::{rss_kib, ProcHost};

use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Serves the Kurento Protocol on `listener` until `shutdown` turns `true`.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    run_with_tls(listener, None, config, shutdown).await
}

/// Like [`run`], also serving `wss://` on `secure` when given (listener and TLS settings).
pub async fn run_with_tls(
    listener: TcpListener,
    secure: Option<(TcpListener, tls::TlsSettings)>,
    config: Config,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let config = Arc::new(config);
    let (core, done) = core_loop::spawn(config.clone(), shutdown.clone())?;
    if let Some((l, settings)) = secure {
        let acceptor = ws::Acceptor::Tls(settings.acceptor());
        let (config, core, shutdown) = (config.clone(), core.clone(), shutdown.clone());
        tokio::spawn(async move { ws::accept_loop(l, acceptor, config, core, shutdown).await });
    }
    let serving = ws::accept_loop(
        listener,
        ws::Acceptor::Plain,
        config,
        core,
        shutdown.clone(),
    );
    tokio::pin!(serving);
    tokio::select! {
        r = &mut serving => r,
        end = done => {
            if *shutdown.borrow() {
                // Normal shutdown: the core finished first. Recordings stopped by the release
                // get their files finalised (bounded), then the listener winds down too.
                let left = tokio::task::spawn_blocking(|| {
                    fluo_gst::wait_idle(std::time::Duration::from_secs(5))
                })
                .await
                .unwrap_or(0);
                if left > 0 {
                    tracing::warn!(left, "recordings not finalised at shutdown");
                }
                return serving.await;
            }
            // The engine is gone (a bug): do not pretend to serve.
            Err(std::io::Error::other(format!("the engine task stopped: {end:?}")))
        }
    }
}
