//! `fluo`: the media server binary. See `fluo --help`.

use clap::Parser;
use fluo_server::config::{Cli, Config};
use std::net::SocketAddr;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub(crate) fn main() -> std::process::ExitCode {
    // A panic ends the process, except in a module's code (fluo_core::panics).
    fluo_core::panics::abort_outside_contain();
    let rust_log = std::env::var("RUST_LOG").ok();
    fluo_server::init_logging(rust_log.as_deref(), fluo_server::log_format_wanted());
    if std::env::args_os().nth(1).as_deref() == Some(fluo_server::WORKER_SUBCOMMAND.as_ref()) {
        fluo_server::run_worker();
    }
    let cli = Cli::parse();
    match fluo_server::raise_open_files_limit() {
        Ok((before, after)) if after > before => {
            tracing::info!("open files limit raised from {before} to {after}")
        }
        Ok((n, _)) => tracing::info!("open files limit: {n}"),
        Err(e) => tracing::warn!("cannot raise the open files limit: {e}"),
    }
    let config = match Config::from_cli(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("fluo: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    match rt.block_on(serve(config)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fluo: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> std::io::Result<()> {
    // Before the port file says we are up: a signal sent once it exists is ours to handle.
    let mut signals = Signals::install()?;
    let addr = SocketAddr::new(config.bind, config.port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
    let local = listener.local_addr()?;
    tracing::info!(
        "Fluo {} listening on ws://{local}/{}",
        env!("CARGO_PKG_VERSION"),
        config.path
    );
    if let Some(w) = config.exposure_warning() {
        tracing::warn!("{w}");
    }
    if let Some(f) = &config.port_file {
        std::fs::write(f, local.port().to_string())?;
    }
    let secure = match (config.secure_port, &config.certificate) {
        (None, _) => None,
        (Some(_), None) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a secure port needs a certificate (--certificate or secure.certificate)",
            ))
        }
        (Some(port), Some(cert)) => {
            let settings = fluo_server::tls::TlsSettings::from_pem_file(cert)?;
            let addr = SocketAddr::new(config.bind, port);
            let l = TcpListener::bind(addr).await.map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"))
            })?;
            let local = l.local_addr()?;
            tracing::info!("also listening on wss://{local}/{}", config.path);
            if let Some(f) = &config.secure_port_file {
                std::fs::write(f, local.port().to_string())?;
            }
            Some((l, settings))
        }
    };
    let ops = fluo_server::Ops::new();
    let drain = ops.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut usr1) = signal(SignalKind::user_defined1()) else {
            tracing::warn!("SIGUSR1 cannot be watched: draining by signal is off");
            return;
        };
        while usr1.recv().await.is_some() {
            tracing::info!("SIGUSR1: draining");
            drain.set_draining(true);
        }
    });
    let (tx, rx) = watch::channel(false);
    let (drained, exit_when_drained) = (ops.clone(), config.exit_when_drained);
    tokio::spawn(async move {
        tokio::select! {
            _ = signals.next() => {
                tracing::info!("shutting down (a second signal exits at once)");
            }
            _ = drained.until_drained(), if exit_when_drained => {
                tracing::info!("drained: shutting down (--exit-when-drained)");
            }
        }
        let _ = tx.send(true);
        signals.next().await;
        tracing::warn!("second signal: exiting now");
        std::process::exit(130);
    });
    fluo_server::run_with_ops(listener, secure, config, rx, ops).await?;
    // Give connection tasks a moment to send their close frames.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    tracing::info!("stopped");
    Ok(())
}

/// SIGTERM and SIGINT, listened to from start-up on (one listener each, so that a second
/// signal sent right after the first is not missed).
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn next(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}
