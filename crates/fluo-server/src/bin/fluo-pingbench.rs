//! `fluo-pingbench`: request throughput of the Kurento endpoint over one connection and over
//! 100 connections, against a server started in this process on 127.0.0.1:0 (or an external
//! one with `--url`), for two requests: `ping` (answered by the connection task) and
//! `describe` of the ServerManager (a full trip through the engine). Each connection keeps a
//! window of requests in flight. Prints one line per scenario.

use futures_util::{SinkExt, StreamExt};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_tungstenite::{connect_async, tungstenite::Message};

const WINDOW: usize = 64;

async fn conn_loop(url: String, until: Instant, method: &'static str) -> u64 {
    let (mut ws, _) = connect_async(url).await.expect("connect");
    let (mut done, mut sent, mut id) = (0u64, 0usize, 0u64);
    loop {
        while sent < WINDOW && Instant::now() < until {
            id += 1;
            let req = match method {
                "ping" => format!(r#"{{"jsonrpc":"2.0","method":"ping","id":{id}}}"#),
                _ => format!(
                    r#"{{"jsonrpc":"2.0","method":"describe","params":{{"object":"manager_ServerManager"}},"id":{id}}}"#
                ),
            };
            ws.send(Message::text(req)).await.expect("send");
            sent += 1;
        }
        if sent == 0 {
            break;
        }
        match ws.next().await {
            Some(Ok(Message::Text(_))) => {
                done += 1;
                sent -= 1;
            }
            Some(Ok(_)) => {}
            _ => break,
        }
    }
    done
}

async fn scenario(url: &str, conns: usize, secs: u64, method: &'static str) -> f64 {
    let until = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let tasks: Vec<_> = (0..conns)
        .map(|_| tokio::spawn(conn_loop(url.to_string(), until, method)))
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("task");
    }
    total as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    // As the server: a panic ends the process (fluo_core::panics).
    fluo_core::panics::abort_outside_contain();
    let args: Vec<String> = std::env::args().collect();
    let secs: u64 = args
        .iter()
        .position(|a| a == "--secs")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let external = args
        .iter()
        .position(|a| a == "--url")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (_stop, rx) = watch::channel(false);
        let url = match external {
            Some(u) => u,
            None => {
                let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
                let port = listener.local_addr().expect("addr").port();
                tokio::spawn(fluo_server::run(listener, fluo_server::Config::default(), rx));
                format!("ws://127.0.0.1:{port}/kurento")
            }
        };
        println!("fluo-pingbench: {url}, {secs} s per scenario, {WINDOW} requests in flight per connection");
        for method in ["ping", "describe"] {
            for conns in [1usize, 100] {
                let rate = scenario(&url, conns, secs, method).await;
                println!("  {method:<8} {conns:>3} connection(s): {rate:>10.0} requests/s");
            }
        }
    });
}
