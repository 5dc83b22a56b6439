//! Churn soak: cycles of pipeline + two WebRtcEndpoints negotiated with real str0m peers over
//! real UDP on 127.0.0.1, media for a moment, then teardown in one of three ways (clean
//! release, WebSocket dropped, peer vanished without DTLS close), against a real Fluo server in
//! this process. Before and after: RSS, file descriptors, threads, pipelines and sessions.

use crate::live::{rpc, start_server, Ws};
use serde_json::{json, Value};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use str0m::change::SdpAnswer;
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio_tungstenite::connect_async_with_config;

/// Process figures read from /proc.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcFigures {
    pub rss_kib: u64,
    pub fds: usize,
    pub threads: usize,
}

impl ProcFigures {
    pub fn read() -> ProcFigures {
        let rss_kib = fluo_server::rss_kib();
        let count = |p: &str| std::fs::read_dir(p).map(|d| d.count()).unwrap_or(0);
        ProcFigures {
            rss_kib,
            fds: count("/proc/self/fd"),
            threads: count("/proc/self/task"),
        }
    }
}

/// What a soak measured.
#[derive(Debug, Clone)]
pub struct SoakReport {
    pub cycles: usize,
    pub media_ok: usize,
    pub failures: Vec<String>,
    pub warm: ProcFigures,
    pub end: ProcFigures,
    pub pipelines_left: usize,
    pub sessions_left: usize,
    pub wall: Duration,
}

impl SoakReport {
    pub fn print(&self) {
        println!(
            "soak: {} cycles in {:.1} s, media flowed in {}, {} failures",
            self.cycles,
            self.wall.as_secs_f64(),
            self.media_ok,
            self.failures.len()
        );
        let growth = if self.warm.rss_kib > 0 {
            (self.end.rss_kib as f64 / self.warm.rss_kib as f64 - 1.0) * 100.0
        } else {
            f64::NAN
        };
        println!(
            "  RSS after warm-up {} KiB -> end {} KiB ({growth:+.1}%)",
            self.warm.rss_kib, self.end.rss_kib
        );
        println!(
            "  file descriptors {} -> {}, threads {} -> {}",
            self.warm.fds, self.end.fds, self.warm.threads, self.end.threads
        );
        println!(
            "  pipelines left {}, sessions left {}",
            self.pipelines_left, self.sessions_left
        );
        for f in self.failures.iter().take(5) {
            println!("  failure: {f}");
        }
    }
}

/// A browser stand-in on a real UDP socket.
struct Peer {
    rtc: Rtc,
    sock: UdpSocket,
    addr: SocketAddr,
    video: Option<Mid>,
    pending: Option<str0m::change::SdpPendingOffer>,
    connected: bool,
    frames_in: u64,
    ts: u64,
}

impl Peer {
    fn new() -> std::io::Result<Peer> {
        let sock = UdpSocket::bind("127.0.0.1:0")?;
        sock.set_nonblocking(true)?;
        let addr = sock.local_addr()?;
        let mut rtc = Rtc::builder().build(Instant::now());
        rtc.add_local_candidate(Candidate::host(addr, "udp").map_err(std::io::Error::other)?);
        Ok(Peer {
            rtc,
            sock,
            addr,
            video: None,
            pending: None,
            connected: false,
            frames_in: 0,
            ts: 0,
        })
    }

    fn offer(&mut self, dir: Direction) -> String {
        let mut api = self.rtc.sdp_api();
        api.add_media(MediaKind::Audio, dir, None, None, None);
        self.video = Some(api.add_media(MediaKind::Video, dir, None, None, None));
        let (offer, pending) = api.apply().expect("an offer");
        self.pending = Some(pending);
        offer.to_sdp_string()
    }

    fn accept(&mut self, answer: &str) -> Result<(), String> {
        let a = SdpAnswer::from_sdp_string(answer).map_err(|e| e.to_string())?;
        let p = self.pending.take().ok_or("no offer")?;
        self.rtc
            .sdp_api()
            .accept_answer(p, a)
            .map_err(|e| e.to_string())
    }

    /// Reads what arrived, sends what is due, fires timers.
    fn drive(&mut self, send_frame: bool) {
        let mut buf = [0u8; 2048];
        let now = Instant::now();
        while let Ok((n, src)) = self.sock.recv_from(&mut buf) {
            if let Ok(contents) = buf[..n].try_into() {
                let _ = self.rtc.handle_input(Input::Receive(
                    now,
                    Receive {
                        proto: Protocol::Udp,
                        source: src,
                        destination: self.addr,
                        contents,
                    },
                ));
            }
        }
        if send_frame && self.connected {
            self.ts += 3000;
            if let Some(w) = self.video.and_then(|m| self.rtc.writer(m)) {
                let pt = w
                    .payload_params()
                    .find(|p| p.spec().codec == Codec::Vp8)
                    .map(|p| p.pt());
                if let Some(pt) = pt {
                    let mut data = vec![0x10u8; 1000];
                    data[0] = 0;
                    let _ = w.write(
                        pt,
                        now,
                        MediaTime::new(self.ts, Frequency::NINETY_KHZ),
                        data,
                    );
                }
            }
        }
        let _ = self.rtc.handle_input(Input::Timeout(now));
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Transmit(t)) => {
                    let _ = self.sock.send_to(&t.contents, t.destination);
                }
                Ok(Output::Event(Event::Connected)) => self.connected = true,
                Ok(Output::Event(Event::MediaData(_))) => self.frames_in += 1,
                Ok(Output::Event(_)) => {}
                Ok(Output::Timeout(_)) | Err(_) => break,
            }
        }
    }
}

/// The next request on a cycle's connection; returns `result.value`.
async fn call(ws: &mut Ws, id: &mut u64, method: &str, params: Value) -> Result<Value, String> {
    *id += 1;
    Ok(rpc(ws, *id, method, params).await?["value"].clone())
}

/// One cycle; `mode` 0 = clean release, 1 = WebSocket dropped, 2 = peers vanish.
async fn cycle(url: &str, mode: usize, media_for: Duration) -> Result<bool, String> {
    let (mut ws, _) = connect_async_with_config(url, None, true)
        .await
        .map_err(|e| e.to_string())?;
    let mut id = 0;
    let p = call(&mut ws, &mut id, "create", json!({"type":"MediaPipeline"})).await?;
    let mut eps = vec![];
    for _ in 0..2 {
        let e = call(
            &mut ws,
            &mut id,
            "create",
            json!({"type":"WebRtcEndpoint","constructorParams":{"mediaPipeline": p}}),
        )
        .await?;
        eps.push(e);
    }
    let mut a = Peer::new().map_err(|e| e.to_string())?;
    let mut b = Peer::new().map_err(|e| e.to_string())?;
    for (peer, ep, dir) in [
        (&mut a, &eps[0], Direction::SendOnly),
        (&mut b, &eps[1], Direction::RecvOnly),
    ] {
        let offer = peer.offer(dir);
        let answer = call(
            &mut ws,
            &mut id,
            "invoke",
            json!({"object": ep, "operation":"processOffer","operationParams":{"offer": offer}}),
        )
        .await?;
        peer.accept(answer.as_str().unwrap_or_default())?;
    }
    call(
        &mut ws,
        &mut id,
        "invoke",
        json!({"object": eps[0], "operation":"connect","operationParams":{"sink": eps[1]}}),
    )
    .await?;
    let t0 = Instant::now();
    let mut tick = 0u64;
    while t0.elapsed() < Duration::from_secs(5) && !(a.connected && b.connected) {
        a.drive(false);
        b.drive(false);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let t1 = Instant::now();
    while t1.elapsed() < media_for {
        a.drive(tick.is_multiple_of(15));
        b.drive(false);
        tick += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let flowed = b.frames_in > 0;
    match mode {
        0 => {
            call(&mut ws, &mut id, "release", json!({"object": p})).await?;
            let _ = ws.close(None).await;
        }
        1 => drop(ws), // no release, no close: the session's grace period cleans up
        _ => {
            // The peers vanish without DTLS close; the app releases later.
            drop(a);
            drop(b);
            call(&mut ws, &mut id, "release", json!({"object": p})).await?;
            let _ = ws.close(None).await;
        }
    }
    Ok(flowed)
}

/// Runs `cycles` cycles (modes in turn); figures are taken after `warmup` cycles.
pub fn run(cycles: usize, warmup: usize, media_for: Duration) -> SoakReport {
    let grace = 1;
    let port = start_server(Duration::from_secs(grace));
    let url = format!("ws://127.0.0.1:{port}/kurento");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    rt.block_on(async move {
        let t0 = Instant::now();
        let mut warm = ProcFigures::read();
        let mut failures = vec![];
        let mut media_ok = 0;
        for i in 0..cycles {
            if i == warmup {
                // Let the warm-up's dropped sessions expire before the baseline.
                tokio::time::sleep(Duration::from_secs(grace + 1)).await;
                warm = ProcFigures::read();
            }
            match cycle(&url, i % 3, media_for).await {
                Ok(true) => media_ok += 1,
                Ok(false) => failures.push(format!("cycle {i}: no media reached the viewer")),
                Err(e) => failures.push(format!("cycle {i}: {e}")),
            }
            if cycles >= 100 && (i + 1) % (cycles / 10) == 0 {
                eprintln!("soak: {}/{} cycles", i + 1, cycles);
            }
        }
        // Sessions dropped in the last cycles expire after the grace period.
        tokio::time::sleep(Duration::from_secs(grace + 2)).await;
        let end = ProcFigures::read();
        let (mut ws, _) = connect_async_with_config(url, None, true)
            .await
            .expect("final connection");
        let mut id = 0;
        let pipes = call(
            &mut ws,
            &mut id,
            "invoke",
            json!({"object":"manager_ServerManager","operation":"getPipelines"}),
        )
        .await
        .unwrap_or_default();
        let sessions = call(
            &mut ws,
            &mut id,
            "invoke",
            json!({"object":"manager_ServerManager","operation":"getSessions"}),
        )
        .await
        .unwrap_or_default();
        SoakReport {
            cycles,
            media_ok,
            failures,
            warm,
            end,
            pipelines_left: pipes.as_array().map_or(0, |a| a.len()),
            // The final connection's own session may appear once it references something.
            sessions_left: sessions.as_array().map_or(0, |a| a.len()),
            wall: t0.elapsed(),
        }
    })
}
