//! WHIP in, WHEP out, with str0m peers on real UDP sockets against a real server: a
//! publisher POSTs its offer to a `fluoWhip` WebRtcEndpoint and PATCHes its candidate to the
//! session, a viewer POSTs its offer to a `fluoWhep` WebRtcEndpoint that the application
//! connected from the WHIP one; the publisher's frames reach the viewer. A DELETE of the
//! publisher's session releases its endpoint (ObjectDestroyed) and the frames stop.
use fluo_testkit::live::{rt, start_server_with, Client};
use fluo_testkit::udp_peer::Peer;
use serde_json::json;
use std::io::{Read, Write};
use std::time::{Duration, Instant};
use str0m::media::Direction;

const SDP: &str = "Content-Type: application/sdp\r\n";

struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

/// One HTTP request to `url`'s host (`path` on it, with `headers`); blocking.
fn http(url: &str, method: &str, path: &str, headers: &str, body: &str) -> Answer {
    let host = url
        .strip_prefix("http://")
        .and_then(|r| r.split('/').next())
        .expect("an http URL");
    let mut s = std::net::TcpStream::connect(host).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    Answer {
        status: head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        head: head.to_string(),
        body: body.to_string(),
    }
}

fn path_of(url: &str) -> String {
    let rest = url.strip_prefix("http://").unwrap();
    rest[rest.find('/').unwrap()..].to_string()
}

async fn endpoint(c: &mut Client, pipe: &str, prop: &str) -> (String, String) {
    let r = c
        .request(
            "create",
            json!({"type":"WebRtcEndpoint","constructorParams":{"mediaPipeline": pipe},
                "properties":{prop: true}}),
        )
        .await
        .unwrap();
    let ep = r["result"]["value"]
        .as_str()
        .expect("an endpoint")
        .to_string();
    let tag = format!("{prop}Url");
    let url = c.invoke(&ep, "getTag", json!({"key": tag})).await.unwrap();
    (ep, url.as_str().unwrap().to_string())
}

#[test]
fn a_whip_publisher_reaches_a_whep_viewer_and_delete_ends_it() {
    let port = start_server_with(fluo_server::Config {
        net: fluo_rtc::NetSettings {
            network_interfaces: Some(vec!["lo".into()]),
            ..Default::default()
        },
        workers: 0,
        ..Default::default()
    });
    rt().block_on(async {
        let (mut c, pipe) = Client::with_pipeline(port).await.unwrap();
        let (e_pub, pub_url) = endpoint(&mut c, &pipe, "fluoWhip").await;
        let (e_view, view_url) = endpoint(&mut c, &pipe, "fluoWhep").await;
        c.invoke(&e_pub, "connect", json!({"sink": e_view}))
            .await
            .unwrap();
        c.subscribe("manager_ServerManager", "ObjectDestroyed")
            .await
            .unwrap();

        let mut publisher = Peer::new(str0m::RtcConfig::new());
        let offer = publisher.offer(Direction::SendOnly);
        // The offer without its candidate: that one comes by PATCH, as a trickling client
        // sends it (the endpoint, ICE-lite, would also learn the address from the checks).
        let (bare, cands): (Vec<&str>, Vec<&str>) = offer
            .split("\r\n")
            .partition(|l| !l.starts_with("a=candidate"));
        assert_eq!(cands.len(), 1, "{offer}");
        let a = http(
            &pub_url,
            "POST",
            &path_of(&pub_url),
            SDP,
            &bare.join("\r\n"),
        );
        assert_eq!(a.status, 201, "{} {}", a.head, a.body);
        publisher.accept(&a.body);
        let session = a.header("location").expect("a Location");
        let etag = a.header("etag").expect("an ETag");
        // The candidate goes with its m-section's mid (the server refuses one it has not).
        let mid = (offer.split("\r\n").find_map(|l| l.strip_prefix("a=mid:"))).expect("a mid");
        let frag = format!("a=mid:{mid}\r\n{}\r\n", cands[0]);
        let headers =
            format!("Content-Type: application/trickle-ice-sdpfrag\r\nIf-Match: {etag}\r\n");
        let p = http(&pub_url, "PATCH", &session, &headers, &frag);
        assert_eq!(p.status, 204, "{} {}", p.head, p.body);

        let mut viewer = Peer::new(str0m::RtcConfig::new());
        let offer = viewer.offer(Direction::RecvOnly);
        let a = http(&view_url, "POST", &path_of(&view_url), SDP, &offer);
        assert_eq!(a.status, 201, "{} {}", a.head, a.body);
        viewer.accept(&a.body);

        let frame = vec![0u8; 800];
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(10) && viewer.frames_in < 30 {
            publisher.drive(Some(&frame));
            viewer.drive(None);
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(publisher.connected, "the publisher connected");
        assert!(
            viewer.frames_in >= 30,
            "frames at the WHEP viewer: {}",
            viewer.frames_in
        );

        let d = http(&pub_url, "DELETE", &session, "", "");
        assert_eq!(d.status, 200, "{} {}", d.head, d.body);
        let gone = c
            .wait_event(
                "ObjectDestroyed",
                "manager_ServerManager",
                Duration::from_secs(5),
            )
            .await
            .expect("ObjectDestroyed");
        assert_eq!(gone["objectId"], json!(e_pub));
        // The frames stop.
        for _ in 0..25 {
            publisher.drive(Some(&frame));
            viewer.drive(None);
            std::thread::sleep(Duration::from_millis(20));
        }
        let before = viewer.frames_in;
        for _ in 0..25 {
            publisher.drive(Some(&frame));
            viewer.drive(None);
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            viewer.frames_in, before,
            "no frames after the publisher's DELETE"
        );
    });
}

/// Drives both peers (the publisher sending `frame`) until the viewer got `more` frames more,
/// for at most 10 s; the frames it got.
fn frames_flow(publisher: &mut Peer, viewer: &mut Peer, frame: &[u8], more: u64) -> u64 {
    let (start, t0) = (viewer.frames_in, Instant::now());
    while t0.elapsed() < Duration::from_secs(10) && viewer.frames_in < start + more {
        publisher.drive(Some(frame));
        viewer.drive(None);
        std::thread::sleep(Duration::from_millis(20));
    }
    viewer.frames_in - start
}

/// Restarts `peer`'s ICE on a new socket by a PATCH of `session` (RFC 9725 4.3.2) and applies
/// the server's answer: the 200's new ETag.
fn restart_by_patch(peer: &mut Peer, url: &str, session: &str, mid: &str, etag: &str) -> String {
    let (ufrag, pwd, cand) = peer.restart_ice();
    let frag = format!(
        "a=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:{mid}\r\n{cand}\r\n"
    );
    let headers = "Content-Type: application/trickle-ice-sdpfrag\r\nIf-Match: *\r\n";
    let r = http(url, "PATCH", session, headers, &frag);
    assert_eq!(r.status, 200, "{} {}", r.head, r.body);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/trickle-ice-sdpfrag")
    );
    let new_etag = r.header("etag").expect("a new ETag");
    assert_ne!(new_etag, etag, "the restart makes a new ICE session");
    assert!(
        r.body
            .contains(&format!("a=ice-ufrag:{}", new_etag.trim_matches('"'))),
        "the ETag is the new ufrag: {new_etag} {}",
        r.body
    );
    peer.accept_restart(&r.body).expect("the restart's answer");
    new_etag
}

#[test]
fn peers_that_move_restart_ice_by_patch_and_the_frames_go_on() {
    let port = start_server_with(fluo_server::Config {
        net: fluo_rtc::NetSettings {
            network_interfaces: Some(vec!["lo".into()]),
            ..Default::default()
        },
        workers: 0,
        ..Default::default()
    });
    rt().block_on(async {
        let (mut c, pipe) = Client::with_pipeline(port).await.unwrap();
        let (e_pub, pub_url) = endpoint(&mut c, &pipe, "fluoWhip").await;
        let (e_view, view_url) = endpoint(&mut c, &pipe, "fluoWhep").await;
        c.invoke(&e_pub, "connect", json!({"sink": e_view}))
            .await
            .unwrap();
        for ev in ["NewCandidatePairSelected", "IceComponentStateChanged"] {
            c.subscribe(&e_pub, ev).await.unwrap();
        }

        let mut publisher = Peer::new(str0m::RtcConfig::new());
        let offer = publisher.offer(Direction::SendOnly);
        let mid = (offer.split("\r\n").find_map(|l| l.strip_prefix("a=mid:"))).expect("a mid");
        let mid = mid.to_string();
        let creds: Vec<&str> = (offer.split("\r\n"))
            .filter(|l| l.starts_with("a=ice-ufrag:") || l.starts_with("a=ice-pwd:"))
            .take(2)
            .collect();
        let old_creds = format!("{}\r\n{}\r\n", creds[0], creds[1]);
        let a = http(&pub_url, "POST", &path_of(&pub_url), SDP, &offer);
        assert_eq!(a.status, 201, "{} {}", a.head, a.body);
        publisher.accept(&a.body);
        let (pub_session, pub_etag) = (a.header("location").unwrap(), a.header("etag").unwrap());
        let mut viewer = Peer::new(str0m::RtcConfig::new());
        let offer = viewer.offer(Direction::RecvOnly);
        let view_mid = (offer.split("\r\n").find_map(|l| l.strip_prefix("a=mid:"))).unwrap();
        let view_mid = view_mid.to_string();
        let a = http(&view_url, "POST", &path_of(&view_url), SDP, &offer);
        assert_eq!(a.status, 201, "{} {}", a.head, a.body);
        viewer.accept(&a.body);
        let (view_session, view_etag) = (a.header("location").unwrap(), a.header("etag").unwrap());

        let frame = vec![0u8; 800];
        let got = frames_flow(&mut publisher, &mut viewer, &frame, 30);
        assert!(got >= 30, "frames before the restart: {got}");
        let first = c
            .wait_event("NewCandidatePairSelected", &e_pub, Duration::from_secs(5))
            .await
            .expect("the first pair");
        c.events.clear();

        // The publisher moves: a new socket, a new ICE session, the same DTLS and streams.
        let new_etag = restart_by_patch(&mut publisher, &pub_url, &pub_session, &mid, &pub_etag);
        let got = frames_flow(&mut publisher, &mut viewer, &frame, 30);
        assert!(got >= 30, "frames after the publisher's restart: {got}");
        let pair = c
            .wait_event("NewCandidatePairSelected", &e_pub, Duration::from_secs(5))
            .await
            .expect("the pair after the restart");
        assert_ne!(pair["candidatePair"], first["candidatePair"], "{pair}");
        let states: Vec<String> = (c.events.iter())
            .filter(|(t, _)| t == "IceComponentStateChanged")
            .map(|(_, d)| d["state"].as_str().unwrap_or_default().to_string())
            .collect();
        let at = states.iter().position(|s| s == "CONNECTING");
        assert!(
            at.is_some_and(|i| states[i..].iter().any(|s| s == "CONNECTED")),
            "checking again, then connected: {states:?}"
        );

        // Trickle names the new ICE session: the old ETag is stale.
        let trickle = |etag: &str| {
            format!("Content-Type: application/trickle-ice-sdpfrag\r\nIf-Match: {etag}\r\n")
        };
        let cand = "a=candidate:9 1 udp 2113937151 127.0.0.1 9 typ host\r\n";
        let frag = format!("a=mid:{mid}\r\n{cand}");
        let r = http(&pub_url, "PATCH", &pub_session, &trickle(&pub_etag), &frag);
        assert_eq!(r.status, 412, "{} {}", r.head, r.body);
        let r = http(&pub_url, "PATCH", &pub_session, &trickle(&new_etag), &frag);
        assert_eq!(r.status, 204, "{} {}", r.head, r.body);

        // Refused restarts leave the session and its frames alone: a trickle of the replaced
        // ICE session arriving late (its credentials, no If-Match: it used to restart ICE
        // again and the publisher was lost), new credentials without If-Match, a restart
        // naming an m-section the session does not have.
        c.events.clear();
        let bare = "Content-Type: application/trickle-ice-sdpfrag\r\n";
        let late = format!("{old_creds}{frag}");
        let r = http(&pub_url, "PATCH", &pub_session, bare, &late);
        assert_eq!(r.status, 412, "{} {}", r.head, r.body);
        let other = "a=ice-ufrag:Nnn4\r\na=ice-pwd:q8cFRB0Tn/HZuuOxCUJYqS+x\r\n";
        let r = http(
            &pub_url,
            "PATCH",
            &pub_session,
            bare,
            &format!("{other}{frag}"),
        );
        assert_eq!(r.status, 428, "{} {}", r.head, r.body);
        let moved = format!("{other}a=mid:nope\r\n");
        let r = http(&pub_url, "PATCH", &pub_session, &trickle("*"), &moved);
        assert_eq!(r.status, 422, "{} {}", r.head, r.body);
        let got = frames_flow(&mut publisher, &mut viewer, &frame, 30);
        assert!(got >= 30, "frames after the refused restarts: {got}");
        c.invoke(&e_pub, "getName", json!({})).await.unwrap();
        let checking = (c.events.iter())
            .any(|(t, d)| t == "IceComponentStateChanged" && d["state"] == "CONNECTING");
        assert!(!checking, "no ICE restart: {:?}", c.events);

        // The viewer moves too: what the server sends follows it, from the moment ICE is
        // back (not from str0m's next RTCP report, up to a second later).
        restart_by_patch(&mut viewer, &view_url, &view_session, &view_mid, &view_etag);
        let (before, t0) = (viewer.frames_in, Instant::now());
        while t0.elapsed() < Duration::from_secs(10) && viewer.frames_in == before {
            publisher.drive(Some(&frame));
            viewer.drive(None);
            std::thread::sleep(Duration::from_millis(5));
        }
        let up = viewer.ice_up_at.expect("the viewer's ICE back up");
        let late = up.elapsed();
        assert!(
            late < Duration::from_millis(200),
            "the first frame on the viewer's new socket came {late:?} after its ICE was up"
        );
        let got = frames_flow(&mut publisher, &mut viewer, &frame, 30);
        assert!(got >= 30, "frames after the viewer's restart: {got}");
    });
}

#[test]
fn a_sink_url_takes_publishers_into_an_element_and_a_new_one_replaces_the_last() {
    let port = start_server_with(fluo_server::Config {
        net: fluo_rtc::NetSettings {
            network_interfaces: Some(vec!["lo".into()]),
            ..Default::default()
        },
        workers: 0,
        ..Default::default()
    });
    rt().block_on(async {
        let (mut c, pipe) = Client::with_pipeline(port).await.unwrap();
        // OBS -> a PassThrough the application made -> WHEP players.
        let r = c
            .request(
                "create",
                json!({"type":"PassThrough","constructorParams":{"mediaPipeline": pipe},
                    "properties":{"fluoWhipSink": true, "fluoWhepSource": true}}),
            )
            .await
            .unwrap();
        let hub = r["result"]["value"]
            .as_str()
            .expect("a PassThrough")
            .to_string();
        let tag = |key: &str| json!({ "key": key });
        let sink_url = c
            .invoke(&hub, "getTag", tag("fluoWhipSinkUrl"))
            .await
            .unwrap();
        let sink_url = sink_url.as_str().unwrap().to_string();
        let play_url = c
            .invoke(&hub, "getTag", tag("fluoWhepSourceUrl"))
            .await
            .unwrap();
        let play_url = play_url.as_str().unwrap().to_string();
        c.subscribe("manager_ServerManager", "ObjectDestroyed")
            .await
            .unwrap();

        let mut first = Peer::new(str0m::RtcConfig::new());
        let offer = first.offer(Direction::SendOnly);
        let a = http(&sink_url, "POST", &path_of(&sink_url), SDP, &offer);
        assert_eq!(a.status, 201, "{} {}", a.head, a.body);
        first.accept(&a.body);
        let mut viewer = Peer::new(str0m::RtcConfig::new());
        let offer = viewer.offer(Direction::RecvOnly);
        let a = http(&play_url, "POST", &path_of(&play_url), SDP, &offer);
        assert_eq!(a.status, 201, "{} {}", a.head, a.body);
        viewer.accept(&a.body);
        let frame = vec![0u8; 800];
        let got = frames_flow(&mut first, &mut viewer, &frame, 30);
        assert!(
            got >= 30,
            "the first publisher's frames at the player: {got}"
        );
        let first_ep = publisher_of(&mut c, &hub).await;

        // The publisher comes back without DELETE (OBS reconnecting): a new endpoint, the
        // old one released, the player goes on with the new publisher's frames.
        let mut second = Peer::new(str0m::RtcConfig::new());
        let offer = second.offer(Direction::SendOnly);
        let a = http(&sink_url, "POST", &path_of(&sink_url), SDP, &offer);
        assert_eq!(a.status, 201, "{} {}", a.head, a.body);
        second.accept(&a.body);
        let gone = c
            .wait_event(
                "ObjectDestroyed",
                "manager_ServerManager",
                Duration::from_secs(5),
            )
            .await
            .expect("ObjectDestroyed");
        assert_eq!(
            gone["objectId"],
            json!(first_ep),
            "the first publisher released"
        );
        // Only the second one sends from now on.
        drop(first);
        let got = frames_flow(&mut second, &mut viewer, &frame, 30);
        assert!(
            got >= 30,
            "the second publisher's frames at the player: {got}"
        );
        // Every connection into the element is the second publisher's: the endpoint whose own
        // URL the second answer's Location is under.
        let second_ep = publisher_of(&mut c, &hub).await;
        assert_ne!(second_ep, first_ep);
        let own = c
            .invoke(&second_ep, "getTag", json!({"key": "fluoWhipUrl"}))
            .await
            .unwrap();
        let location = a.header("location").expect("a Location");
        assert_eq!(
            Some(path_of(own.as_str().unwrap()).as_str()),
            location.rsplit_once('/').map(|(p, _)| p),
            "the element's publisher is the second POST's endpoint"
        );
    });
}

/// The one endpoint every source connection of `element` comes from.
async fn publisher_of(c: &mut Client, element: &str) -> String {
    let sources = c
        .invoke(element, "getSourceConnections", json!({}))
        .await
        .unwrap();
    let all: Vec<&str> = (sources.as_array().expect("connections").iter())
        .map(|s| s["source"].as_str().expect("a source"))
        .collect();
    assert!(!all.is_empty(), "no publisher: {sources}");
    assert!(all.iter().all(|s| *s == all[0]), "one publisher: {sources}");
    all[0].to_string()
}
