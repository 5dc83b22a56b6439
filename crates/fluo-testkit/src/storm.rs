//! Negotiation storm: many WebRtcEndpoints created and negotiated at once over many
//! WebSocket connections against a real Fluo server on 127.0.0.1:0, while a separate
//! connection measures how fast the engine still answers a request (a `describe` of the
//! ServerManager: plain pings are answered by the connection task, never reaching the
//! engine, so they would show nothing).

use crate::live::{rpc, start_server};
use crate::stats::percentile;
use serde_json::json;
use std::time::{Duration, Instant};
use str0m::media::{Direction, MediaKind};
use tokio_tungstenite::connect_async_with_config;

/// What a storm measured.
#[derive(Debug, Clone)]
pub struct StormReport {
    pub endpoints: usize,
    pub connections: usize,
    pub succeeded: usize,
    pub failures: Vec<String>,
    /// create + processOffer, per endpoint, sorted (ms).
    pub negotiation_ms: Vec<f64>,
    /// Round trips of a request through the engine (`describe` of the ServerManager) on a
    /// connection of its own during the storm, sorted (ms).
    pub probe_ms: Vec<f64>,
    /// Probe answers that were not the engine's `describe` result.
    pub probe_errors: Vec<String>,
    pub wall: Duration,
}

impl StormReport {
    /// One line per figure.
    pub fn print(&self) {
        println!(
            "storm: {} WebRtcEndpoints over {} connections: {} negotiated, {} failed, {:.2} s",
            self.endpoints,
            self.connections,
            self.succeeded,
            self.failures.len(),
            self.wall.as_secs_f64()
        );
        println!(
            "  create+processOffer per endpoint: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            percentile(&self.negotiation_ms, 50.0),
            percentile(&self.negotiation_ms, 99.0),
            self.negotiation_ms.last().copied().unwrap_or(f64::NAN)
        );
        println!(
            "  engine round trip (describe) during the storm ({} samples): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.probe_ms.len(),
            percentile(&self.probe_ms, 50.0),
            percentile(&self.probe_ms, 99.0),
            self.probe_ms.last().copied().unwrap_or(f64::NAN)
        );
        for e in self.probe_errors.iter().take(3) {
            println!("  probe: {e}");
        }
        for f in self.failures.iter().take(5) {
            println!("  failure: {f}");
        }
    }
}

/// A browser-like offer (audio + video, BUNDLE) from str0m.
fn offer() -> String {
    let mut rtc = str0m::Rtc::builder().build(Instant::now());
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
    api.add_media(MediaKind::Video, Direction::SendRecv, None, None, None);
    api.apply().expect("an offer").0.to_sdp_string()
}

/// Runs a storm of `endpoints` spread over `connections`.
pub fn run(endpoints: usize, connections: usize) -> StormReport {
    let port = start_server(Duration::from_secs(240));
    let url = format!("ws://127.0.0.1:{port}/kurento");
    let per_conn = endpoints.div_ceil(connections.max(1));
    let offers: Vec<String> = (0..per_conn.min(8)).map(|_| offer()).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    rt.block_on(async move {
        let (done_tx, mut done_rx) = tokio::sync::watch::channel(false);
        let probe_url = url.clone();
        let prober = tokio::spawn(async move {
            let (mut ws, _) = connect_async_with_config(probe_url, None, true).await.expect("probe connection");
            let (mut samples, mut errors) = (vec![], vec![]);
            let mut id = 0u64;
            loop {
                id += 1;
                let t = Instant::now();
                let r = rpc(&mut ws, id, "describe", json!({"object": "manager_ServerManager"})).await;
                match r {
                    // Only the engine answers describe (with the type and a session).
                    Ok(v) if v["type"] == "ServerManager" && v["sessionId"].is_string() => {
                        samples.push(t.elapsed().as_secs_f64() * 1e3)
                    }
                    Ok(v) => errors.push(format!("unexpected answer {v}")),
                    Err(e) => {
                        errors.push(e);
                        break;
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                    _ = done_rx.changed() => break,
                }
            }
            (samples, errors)
        });
        let t0 = Instant::now();
        let mut tasks = vec![];
        for c in 0..connections {
            let url = url.clone();
            let offers = offers.clone();
            let n = per_conn.min(endpoints.saturating_sub(c * per_conn));
            tasks.push(tokio::spawn(async move {
                let mut times = vec![];
                let mut failures = vec![];
                let (mut ws, _) = match connect_async_with_config(url, None, true).await {
                    Ok(x) => x,
                    Err(e) => return (times, vec![format!("connect: {e}")]),
                };
                let p = match rpc(&mut ws, 0, "create", json!({"type":"MediaPipeline"})).await {
                    Ok(r) => r["value"].as_str().unwrap_or_default().to_string(),
                    Err(e) => return (times, vec![format!("pipeline: {e}")]),
                };
                for i in 0..n {
                    let t = Instant::now();
                    let id = 1 + 2 * i as u64;
                    let ep = match rpc(&mut ws, id, "create", json!({"type":"WebRtcEndpoint","constructorParams":{"mediaPipeline": p}})).await {
                        Ok(r) => r["value"].as_str().unwrap_or_default().to_string(),
                        Err(e) => {
                            failures.push(format!("create: {e}"));
                            continue;
                        }
                    };
                    let offer = &offers[i % offers.len()];
                    match rpc(&mut ws, id + 1, "invoke", json!({"object": ep, "operation":"processOffer","operationParams":{"offer": offer}})).await {
                        Ok(r) if r["value"].as_str().is_some_and(|a| a.starts_with("v=0")) => {
                            times.push(t.elapsed().as_secs_f64() * 1e3)
                        }
                        Ok(r) => failures.push(format!("processOffer answered {r}")),
                        Err(e) => failures.push(format!("processOffer: {e}")),
                    }
                }
                let _ = rpc(&mut ws, u64::MAX / 2, "release", json!({"object": p})).await;
                (times, failures)
            }));
        }
        let mut negotiation_ms = vec![];
        let mut failures = vec![];
        for t in tasks {
            let (times, f) = t.await.expect("storm task");
            negotiation_ms.extend(times);
            failures.extend(f);
        }
        let wall = t0.elapsed();
        let _ = done_tx.send(true);
        let (mut probe_ms, probe_errors) = prober.await.expect("prober");
        negotiation_ms.sort_by(f64::total_cmp);
        probe_ms.sort_by(f64::total_cmp);
        StormReport {
            endpoints,
            connections,
            succeeded: negotiation_ms.len(),
            failures,
            negotiation_ms,
            probe_ms,
            probe_errors,
            wall,
        }
    })
}
