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
