//! A Composite's (or an AlphaBlending's, or a Mixer's) media worker killed while media flows through it:
//! every HubPort of the hub raises its Error event (40003, HUB_ERROR, the death's cause and
//! pid), and a recording in another pipeline (another worker) goes on undisturbed.
//!
//! The worker's pid is found as an operator finds it: in the server's log ("element runs in
//! media worker", with the port's id and the worker's pid).
//!
//! A hub's ports are not rebuilt after their worker's death (a dead element stays dead,
//! docs/workers.md), but the hub lives on: a port made on it afterwards runs on the restarted
//! worker with its own output settings (checked on the Composite).

use fluo_server::log_capture::LogBuffer;
use fluo_testkit::clips;
use fluo_testkit::live::{rt, serial, start_server, Client};
use fluo_testkit::tmp;
use fluo_testkit::workers::{assert_killed_event, kill_9, operator_log, worker_pid};
use serde_json::{json, Value};
use std::time::Duration;

#[test]
fn a_composites_worker_killed_raises_every_ports_error_and_leaves_other_pipelines() {
    hub_worker_killed("Composite");
}

#[test]
fn an_alpha_blendings_worker_killed_raises_every_ports_error_and_leaves_other_pipelines() {
    hub_worker_killed("AlphaBlending");
}

#[test]
fn a_mixers_worker_killed_raises_every_ports_error_and_leaves_other_pipelines() {
    hub_worker_killed("Mixer");
}

/// The hub of `class` (a Composite, an AlphaBlending or a Mixer) loses its worker while a player feeds
/// port a and port b's output is recorded.
fn hub_worker_killed(class: &str) {
    let _serial = serial();
    let log = operator_log();
    let dir = tmp::dir(&format!("{}-crash", class.to_lowercase()));
    let clip = clips::av_clip(&dir, "clip.webm", 20);
    let uri = format!("file://{}", clip.display());
    let port = start_server(Duration::from_secs(30));
    rt().block_on(async {
        // Another pipeline, on another worker: a player recorded.
        let (mut co, pipe_o) = Client::with_pipeline(port).await.expect("pipeline");
        let po = co
            .create("PlayerEndpoint", json!({"mediaPipeline": pipe_o, "uri": uri}))
            .await
            .expect("player");
        let ro = co
            .create(
                "RecorderEndpoint",
                json!({"mediaPipeline": pipe_o, "uri": format!("file://{}", dir.join("other.webm").display())}),
            )
            .await
            .expect("recorder");
        for ev in ["MediaFlowInStateChanged", "Error"] {
            co.subscribe(&ro, ev).await.expect("subscribe");
        }
        co.invoke(&po, "connect", json!({"sink": ro}))
            .await
            .expect("connect");
        co.invoke(&ro, "record", json!({})).await.expect("record");
        co.invoke(&po, "play", json!({})).await.expect("play");

        // The hub: a player into port a, port b recorded.
        let (mut c, pipe) = Client::with_pipeline(port).await.expect("pipeline");
        let hub = c
            .create(class, json!({"mediaPipeline": pipe}))
            .await
            .expect("hub");
        let a = c
            .create("HubPort", json!({"hub": hub}))
            .await
            .expect("port a");
        let b = c
            .create("HubPort", json!({"hub": hub}))
            .await
            .expect("port b");
        let player = c
            .create("PlayerEndpoint", json!({"mediaPipeline": pipe, "uri": uri}))
            .await
            .expect("player");
        let rec = c
            .create(
                "RecorderEndpoint",
                json!({"mediaPipeline": pipe, "uri": format!("file://{}", dir.join("grid.webm").display())}),
            )
            .await
            .expect("recorder");
        for (id, ev) in [
            (&a, "Error"),
            (&b, "Error"),
            (&rec, "MediaFlowInStateChanged"),
        ] {
            c.subscribe(id, ev).await.expect("subscribe");
        }
        c.invoke(&player, "connect", json!({"sink": a}))
            .await
            .expect("connect");
        if class == "AlphaBlending" {
            c.invoke(&hub, "setMaster", json!({"source": a, "zOrder": 1}))
                .await
                .expect("setMaster");
            let props = json!({"relativeX": 0.5, "relativeY": 0.5, "zOrder": 2,
                "relativeWidth": 0.5, "relativeHeight": 0.5, "port": b});
            c.invoke(&hub, "setPortProperties", props)
                .await
                .expect("setPortProperties");
        }
        if class == "Mixer" {
            for media in ["VIDEO", "AUDIO"] {
                c.invoke(&hub, "connect", json!({"media": media, "source": a, "sink": b}))
                    .await
                    .expect("route a to b");
            }
        }
        c.invoke(&b, "connect", json!({"sink": rec}))
            .await
            .expect("connect");
        c.invoke(&rec, "record", json!({})).await.expect("record");
        c.invoke(&player, "play", json!({})).await.expect("play");
        let ev = c
            .wait_event("MediaFlowInStateChanged", &rec, Duration::from_secs(15))
            .await
            .expect("the hub's output reaches the recorder");
        assert_eq!(ev["state"], "FLOWING");
        let ev = co
            .wait_event("MediaFlowInStateChanged", &ro, Duration::from_secs(15))
            .await
            .expect("the other pipeline's media flows");
        assert_eq!(ev["state"], "FLOWING");

        let pid = worker_pid(log, &a).expect("port a's worker in the log");
        assert_eq!(worker_pid(log, &b), Some(pid), "a hub's ports share a worker");
        let other = worker_pid(log, &ro).expect("the other recorder's worker");
        assert_ne!(other, pid, "the other pipeline runs on another worker");
        kill_9(pid);
        let mut texts = vec![];
        for p in [&a, &b] {
            let ev: Value = c
                .wait_event("Error", p, Duration::from_secs(5))
                .await
                .expect("the port's Error event");
            let d = assert_killed_event(&ev, "HUB_ERROR");
            assert!(d.contains(&format!("pid {pid}")), "{ev}");
            texts.push(d);
        }
        assert_eq!(texts[0], texts[1]);
        // The other pipeline carries on: its recorder still receives, no error.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let flowing = co
            .invoke(&ro, "isMediaFlowingIn", json!({"mediaType": "VIDEO"}))
            .await
            .expect("isMediaFlowingIn");
        assert_eq!(flowing, json!(true), "the other recording goes on");
        assert!(co
            .wait_event("Error", &ro, Duration::from_millis(10))
            .await
            .is_none());
        if class == "Composite" {
            new_port_follows_its_settings(&mut c, log, (&pipe, &hub), pid).await;
        }
        // The dead hub's ports and the hub release cleanly.
        for id in [&a, &b, &hub] {
            c.request("release", json!({"object": id}))
                .await
                .expect("release");
        }
    });
}

/// A port made on `hub` after its worker (`dead`) was killed runs on the restarted worker and
/// follows its own settings: set to PCMU, it encodes G.711 itself, so an RtpEndpoint that
/// takes only PCMU gets it with no transcoder after the port.
async fn new_port_follows_its_settings(
    c: &mut Client,
    log: &LogBuffer,
    (pipe, hub): (&str, &str),
    dead: u32,
) {
    let port = c
        .create("HubPort", json!({"hub": hub}))
        .await
        .expect("a port made after the death");
    let caps = json!({"codec": "PCMU", "bitrate": 0});
    c.invoke(&port, "setAudioFormat", json!({"caps": caps}))
        .await
        .expect("setAudioFormat");
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("a UDP socket");
    let udp = sock.local_addr().expect("its address").port();
    let offer = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=peer\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {udp} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=recvonly\r\n"
    );
    let rtp = c
        .create("RtpEndpoint", json!({"mediaPipeline": pipe}))
        .await
        .expect("an RtpEndpoint");
    c.invoke(&rtp, "processOffer", json!({"offer": offer}))
        .await
        .expect("processOffer");
    c.invoke(&port, "connect", json!({"sink": rtp, "mediaType": "AUDIO"}))
        .await
        .expect("connect");
    let (mut buf, mut pcmu) = ([0u8; 2048], 0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while pcmu < 25 {
        let n = tokio::time::timeout_at(deadline, sock.recv(&mut buf))
            .await
            .expect("PCMU from the new port within 10 s")
            .expect("recv");
        if n >= 12 && buf[1] & 0x7f == 0 {
            pcmu += 1;
        }
    }
    let transcoding = c
        .invoke(&port, "isMediaTranscoding", json!({"mediaType": "AUDIO"}))
        .await
        .expect("isMediaTranscoding");
    assert_eq!(
        transcoding,
        json!(false),
        "the new port encodes PCMU itself: its settings reached its job"
    );
    let now = worker_pid(log, &port).expect("the new port's worker in the log");
    assert_ne!(now, dead, "the new port runs on the restarted worker");
    for id in [&rtp, &port] {
        c.request("release", json!({"object": id}))
            .await
            .expect("release");
    }
}
