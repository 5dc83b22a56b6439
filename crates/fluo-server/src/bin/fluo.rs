//! `fluo`: the media server binary. See `fluo --help`.

use clap::Parser;
use fluo_server::config::{Cli, Config};
use std::net::SocketAddr;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub(crate) fn main() -> std::process::ExitCode {
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
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down (a second signal exits at once)");
        let _ = tx.send(true);
        wait_for_signal().await;
        tracing::warn!("second signal: exiting now");
        std::process::exit(130);
    });
    fluo_server::run_with_ops(listener, secure, config, rx, ops).await?;
    // Give connection tasks a moment to send their close frames.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
