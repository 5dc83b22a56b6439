//! The SDK's examples against a real Fluo server binary (the debug `fluo` that `cargo test
//! --workspace` builds, or `FLUO_BIN`), started on port 0 with str0m peers on 127.0.0.1:
//! a loopback, one publisher to three viewers, and a recording checked with ffprobe.

use fluo_client::model::*;
use fluo_client::{Client, RemoteObject};
use fluo_testkit::procs::FluoProcess;
use fluo_testkit::udp_peer::{Pacer, Peer};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use str0m::media::Direction;

/// The server binary: `FLUO_BIN`, else `fluo` next to this test's `deps/` folder.
fn fluo_bin() -> PathBuf {
    if let Some(b) = std::env::var_os("FLUO_BIN") {
        return b.into();
    }
    let exe = std::env::current_exe().expect("the test's path");
    let bin = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target dir")
        .join("fluo");
    assert!(
        bin.exists(),
        "{} not found: cargo build -p fluo-server (cargo test --workspace builds it) or set FLUO_BIN",
        bin.display()
    );
    bin
}

struct Server {
    process: FluoProcess,
    dir: tempfile::TempDir,
}

impl Server {
    fn start(name: &str) -> Server {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let process = FluoProcess::start(&fluo_bin(), &[], dir.path(), name);
        Server { process, dir }
    }

    async fn client(&self) -> Client {
        let url = format!("ws://127.0.0.1:{}/kurento", self.process.port);
        Client::connect(&url).await.expect("the client connects")
    }
}

fn frames(dir: &std::path::Path) -> Vec<Vec<u8>> {
    fluo_testkit::clips::testsrc_vp8(&dir.join("clip.ivf"), "320x240", 2, "300k", 30)
}

/// Offers `dir` to `ep` and applies its answer.
async fn negotiate(peer: &mut Peer, ep: &WebRtcEndpoint, dir: Direction) {
    let answer = ep
        .process_offer(&peer.offer(dir))
        .await
        .expect("processOffer");
    peer.accept(&answer);
}

/// Drives `peers` (the first sends `frames`) every 5 ms until `done` says so or `max` passes.
async fn drive(
    peers: &mut [Peer],
    frames: &[Vec<u8>],
    max: Duration,
    mut done: impl FnMut(&[Peer]) -> bool,
) -> bool {
    let mut pacer = Pacer::default();
    let t0 = Instant::now();
    while t0.elapsed() < max {
        let frame = pacer.frame(peers[0].connected, frames);
        peers[0].drive(frame);
        for p in peers.iter_mut().skip(1) {
            p.drive(None);
        }
        if done(peers) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

#[tokio::test]
async fn loopback_media_flows_and_the_typed_event_says_so() {
    let server = Server::start("sdk-loopback");
    let client = server.client().await;
    let pipeline = MediaPipeline::create(&client).build().await.unwrap();
    let ep = WebRtcEndpoint::create(&pipeline).build().await.unwrap();
    ep.connect(&ep, None, None, None).await.unwrap();
    let mut flow = ep.subscribe_media_flow_in_state_changed().await.unwrap();
    let mut peers = [Peer::new(str0m::RtcConfig::new())];
    negotiate(&mut peers[0], &ep, Direction::SendRecv).await;
    let frames = frames(server.dir.path());
    let mut flowing = None;
    let t0 = Instant::now();
    while flowing.is_none() && t0.elapsed() < Duration::from_secs(30) {
        drive(&mut peers, &frames, Duration::from_millis(50), |_| false).await;
        while let Ok(Some(e)) =
            tokio::time::timeout(Duration::from_millis(1), flow.next_event()).await
        {
            if e.state == MediaFlowState::Flowing && e.media_type == MediaType::Video {
                flowing = Some(e);
            }
        }
    }
    let e = flowing.expect("MediaFlowInStateChanged FLOWING (video) within 30 s");
    assert_eq!(e.source, ep.id());
    // The endpoint sends the peer's video back to it.
    let back = drive(&mut peers, &frames, Duration::from_secs(20), |p| {
        p[0].frames_in >= 10
    })
    .await;
    assert!(back, "the peer got {} frames back", peers[0].frames_in);
    assert!(ep
        .is_media_flowing_in(MediaType::Video, None)
        .await
        .unwrap());
    pipeline.release().await.unwrap();
}

#[tokio::test]
async fn one_publisher_reaches_three_viewers() {
    let server = Server::start("sdk-one-to-many");
    let client = server.client().await;
    let pipeline = MediaPipeline::create(&client).build().await.unwrap();
    let publisher = WebRtcEndpoint::create(&pipeline).build().await.unwrap();
    let mut peers = vec![Peer::new(str0m::RtcConfig::new())];
    negotiate(&mut peers[0], &publisher, Direction::SendOnly).await;
    for _ in 0..3 {
        let viewer = WebRtcEndpoint::create(&pipeline).build().await.unwrap();
        publisher.connect(&viewer, None, None, None).await.unwrap();
        let mut peer = Peer::new(str0m::RtcConfig::new());
        negotiate(&mut peer, &viewer, Direction::RecvOnly).await;
        peers.push(peer);
    }
    let frames = frames(server.dir.path());
    let all = drive(&mut peers, &frames, Duration::from_secs(40), |p| {
        p[1..].iter().all(|v| v.frames_in >= 10)
    })
    .await;
    let got: Vec<u64> = peers[1..].iter().map(|v| v.frames_in).collect();
    assert!(all, "each viewer gets 10 frames; they got {got:?}");
    pipeline.release().await.unwrap();
}

#[tokio::test]
async fn a_recording_of_the_publisher_is_a_playable_file() {
    let server = Server::start("sdk-recorder");
    let client = server.client().await;
    let file = server.dir.path().join("rec.webm");
    let pipeline = MediaPipeline::create(&client).build().await.unwrap();
    let publisher = WebRtcEndpoint::create(&pipeline).build().await.unwrap();
    let uri = format!("file://{}", file.display());
    let recorder = RecorderEndpoint::create(&pipeline, &uri)
        .media_profile(MediaProfileSpecType::WebmVideoOnly)
        .build()
        .await
        .unwrap();
    publisher
        .connect(&recorder, None, None, None)
        .await
        .unwrap();
    let mut recording = recorder.subscribe_recording().await.unwrap();
    let mut peers = [Peer::new(str0m::RtcConfig::new())];
    negotiate(&mut peers[0], &publisher, Direction::SendOnly).await;
    let frames = frames(server.dir.path());
    assert!(
        drive(&mut peers, &frames, Duration::from_secs(20), |p| p[0]
            .connected)
        .await,
        "the publisher connects"
    );
    recorder.record().await.unwrap();
    let started = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            drive(&mut peers, &frames, Duration::from_millis(50), |_| false).await;
            if let Ok(Some(_)) =
                tokio::time::timeout(Duration::from_millis(1), recording.next_event()).await
            {
                return;
            }
        }
    })
    .await;
    assert!(started.is_ok(), "Recording event within 20 s");
    drive(&mut peers, &frames, Duration::from_secs(3), |_| false).await;
    recorder.stop_and_wait().await.unwrap();
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type,codec_name:format=duration",
            "-of",
            "json",
        ])
        .arg(&file)
        .output()
        .expect("ffprobe runs (a test dependency)");
    assert!(
        out.status.success(),
        "ffprobe reads {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let probe: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let streams = probe["streams"].as_array().unwrap();
    assert!(
        streams
            .iter()
            .any(|s| s["codec_type"] == "video" && s["codec_name"] == "vp8"),
        "{probe}"
    );
    let secs: f64 = probe["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .unwrap_or(0.0);
    assert!(secs >= 1.0, "the recording lasts {secs} s: {probe}");
    pipeline.release().await.unwrap();
}

/// A TCP proxy on 127.0.0.1 port 0 to `port` whose connections [`Proxy::cut`] drops.
struct Proxy {
    port: u16,
    conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Proxy {
    async fn start(port: u16) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>> =
            Default::default();
        let proxy = Proxy {
            port: listener.local_addr().unwrap().port(),
            conns: conns.clone(),
        };
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let task = tokio::spawn(async move {
                    let Ok(mut out) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await
                    else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                });
                conns.lock().unwrap().push(task.abort_handle());
            }
        });
        proxy
    }

    /// Drops every connection made so far (both sockets close).
    fn cut(&self) {
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}

#[tokio::test]
async fn a_dropped_connection_is_resumed_with_its_session_and_subscriptions() {
    let server = Server::start("sdk-reconnect");
    let proxy = Proxy::start(server.process.port).await;
    let url = format!("ws://127.0.0.1:{}/kurento", proxy.port);
    let opts = fluo_client::Options {
        reconnect_delay: Duration::from_millis(50),
        ..Default::default()
    };
    let client = Client::connect_with(&url, opts).await.unwrap();
    let mut conn_events = client.connection_events();
    let pipeline = MediaPipeline::create(&client).build().await.unwrap();
    let session = client
        .session_id()
        .expect("a session after the first answer");
    let mut created = client
        .server_manager()
        .subscribe_object_created()
        .await
        .unwrap();
    proxy.cut();
    let wait = Duration::from_secs(20);
    let ev = tokio::time::timeout(wait, conn_events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ev, fluo_client::ConnectionEvent::Disconnected);
    let ev = tokio::time::timeout(wait, conn_events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        ev,
        fluo_client::ConnectionEvent::Reconnected { session_kept: true }
    );
    assert_eq!(client.session_id().as_deref(), Some(session.as_str()));
    // The pipeline made before the drop is still usable, and the subscription made before
    // it still delivers.
    let ep = WebRtcEndpoint::create(&pipeline).build().await.unwrap();
    let got = tokio::time::timeout(wait, async {
        while let Some(e) = created.next_event().await {
            if e.object == ep.id() {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        got,
        Ok(true),
        "ObjectCreated of the new endpoint through the old subscription"
    );
    pipeline.release().await.unwrap();
}
