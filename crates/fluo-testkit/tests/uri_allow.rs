//! The URI allow-list holds for every URI a player or recorder opens: against a local HTTP
//! server that redirects out of the list and serves an HLS playlist pointing out of it, the
//! player never fetches the outside URI (read from the server's request log) and raises a
//! clear Error event; an upload that is redirected does not follow either; entries match at
//! path-segment boundaries. Without a list, redirects are followed as in KMS.

use fluo_testkit::live::{rt, start_server, start_server_with, Client};
use fluo_testkit::tmp;
use serde_json::json;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A 2 s VP8 + Opus WebM test pattern.
fn clip(dir: &Path) -> PathBuf {
    let out = dir.join("clip.webm");
    let st = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc=size=320x240:rate=30")
        .args(["-f", "lavfi", "-i", "sine=frequency=440", "-t", "2"])
        .args(["-c:v", "libvpx", "-c:a", "libopus"])
        .arg(&out)
        .status()
        .expect("ffmpeg runs (a test dependency)");
    assert!(st.success());
    out
}

/// The request lines the test server saw ("GET /path").
type Log = Arc<Mutex<Vec<String>>>;

/// An HTTP server on 127.0.0.1:0: `/allowed/clip.webm` and `/outside/*` serve the clip,
/// `/allowed/redirect*` redirects (302 for GET, 307 otherwise) to `/outside/...`,
/// `/allowed/list.m3u8` is an HLS playlist whose one segment is under `/outside/`.
fn http_server(clip: PathBuf) -> (u16, Log) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let log: Log = Arc::default();
    let seen = log.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let (clip, seen) = (clip.clone(), seen.clone());
            std::thread::spawn(move || {
                let mut r = BufReader::new(s.try_clone().expect("clone"));
                let mut line = String::new();
                if r.read_line(&mut line).is_err() {
                    return;
                }
                let mut parts = line.split_whitespace();
                let (method, path) = (
                    parts.next().unwrap_or_default().to_string(),
                    parts.next().unwrap_or_default().to_string(),
                );
                seen.lock().unwrap().push(format!("{method} {path}"));
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                        break;
                    }
                }
                let mut w = s;
                let (status, ctype, body): (&str, &str, Vec<u8>) = if path
                    .starts_with("/allowed/redirect")
                {
                    let code = if method == "GET" {
                        "302 Found"
                    } else {
                        "307 Temporary Redirect"
                    };
                    let head = format!(
                        "HTTP/1.1 {code}\r\nLocation: http://127.0.0.1:{port}/outside/clip.webm\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    let _ = w.write_all(head.as_bytes());
                    return;
                } else if path == "/allowed/list.m3u8" {
                    let list = format!(
                        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:2.0,\nhttp://127.0.0.1:{port}/outside/seg0.ts\n#EXT-X-ENDLIST\n"
                    );
                    ("200 OK", "application/vnd.apple.mpegurl", list.into_bytes())
                } else if path == "/allowed/clip.webm" || path.starts_with("/outside/") {
                    (
                        "200 OK",
                        "video/webm",
                        std::fs::read(&clip).unwrap_or_default(),
                    )
                } else {
                    ("404 Not Found", "text/plain", vec![])
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = w.write_all(head.as_bytes());
                let _ = w.write_all(&body);
                // Drain an upload's body until the peer closes.
                let mut sink = [0u8; 4096];
                while r.read(&mut sink).unwrap_or(0) > 0 {}
            });
        }
    });
    (port, log)
}

/// A server whose URI allow-list is `uri_allow`, media on `lo`; its port.
fn server_allowing(uri_allow: Vec<String>) -> u16 {
    start_server_with(fluo_server::Config {
        uri_allow,
        net: fluo_rtc::NetSettings {
            network_interfaces: Some(vec!["lo".into()]),
            ..Default::default()
        },
        ..Default::default()
    })
}

fn outside(log: &Log) -> Vec<String> {
    log.lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("/outside/"))
        .cloned()
        .collect()
}

#[test]
fn with_an_allow_list_players_and_recorders_open_no_uri_outside_it() {
    let dir = tmp::dir("uri-allow");
    let clip = clip(&dir);
    let (web, log) = http_server(clip.clone());
    let base = format!("http://127.0.0.1:{web}");
    // No trailing slash: matched at a path-segment boundary.
    let port = server_allowing(vec![
        format!("{base}/allowed"),
        format!("file://{}/", dir.display()),
    ]);
    rt().block_on(async {
        let (mut c, pipe) = Client::with_pipeline(port).await.expect("pipeline");
        let e = c
            .create("PlayerEndpoint", json!({"mediaPipeline": pipe, "uri": format!("{base}/allowed-private/clip.webm")}))
            .await
            .expect_err("a sibling path with the entry as prefix");
        assert!(e.contains("40107") && e.contains("allow-list"), "{e}");

        // What the list allows plays to its end.
        let p = c
            .create("PlayerEndpoint", json!({"mediaPipeline": pipe, "uri": format!("{base}/allowed/clip.webm")}))
            .await
            .expect("player");
        for ev in ["EndOfStream", "Error"] {
            c.subscribe(&p, ev).await.expect("subscribe");
        }
        c.invoke(&p, "play", json!({})).await.expect("play");
        assert!(
            c.wait_event("EndOfStream", &p, Duration::from_secs(20)).await.is_some(),
            "the allowed clip plays to its end"
        );
        assert!(
            !c.events.iter().any(|(t, d)| t == "Error" && d["source"] == p.as_str()),
            "no error for the allowed clip: {:?}",
            c.events
        );

        // A redirect out of the list, and a playlist pointing out of it.
        for (path, what) in [("redirect.webm", "redirect"), ("list.m3u8", "x-hls")] {
            let p = c
                .create("PlayerEndpoint", json!({"mediaPipeline": pipe, "uri": format!("{base}/allowed/{path}")}))
                .await
                .expect("player");
            c.subscribe(&p, "Error").await.expect("subscribe");
            c.invoke(&p, "play", json!({})).await.expect("play");
            let err = c
                .wait_event("Error", &p, Duration::from_secs(10))
                .await
                .unwrap_or_else(|| panic!("{path}: an Error event"));
            let text = err["description"].as_str().unwrap_or_default().to_string();
            println!("{path}: {text}");
            assert!(text.contains(what) && text.contains("allow-list"), "{path}: {err}");
            // Time for a fetch that should not happen.
            tokio::time::sleep(Duration::from_secs(2)).await;
            assert!(outside(&log).is_empty(), "{path}: fetched {:?}", outside(&log));
        }

        // An upload whose target redirects out of the list does not follow it.
        let p = c
            .create("PlayerEndpoint", json!({"mediaPipeline": pipe, "uri": format!("file://{}", clip.display())}))
            .await
            .expect("player");
        let r = c
            .create("RecorderEndpoint", json!({"mediaPipeline": pipe, "uri": format!("{base}/allowed/redirect-upload.webm")}))
            .await
            .expect("recorder");
        c.invoke(&p, "connect", json!({"sink": r})).await.expect("connect");
        c.invoke(&r, "record", json!({})).await.expect("record");
        c.invoke(&p, "play", json!({})).await.expect("play");
        tokio::time::sleep(Duration::from_secs(4)).await;
        let uploads: Vec<String> = log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("redirect-upload"))
            .cloned()
            .collect();
        assert!(!uploads.is_empty(), "the recorder tried its target: {:?}", log.lock().unwrap());
        assert!(outside(&log).is_empty(), "upload followed to {:?}", outside(&log));
        c.request("release", json!({"object": pipe})).await.expect("release");
    });
}

#[test]
fn without_an_allow_list_redirects_are_followed_as_in_kms() {
    let dir = tmp::dir("uri-open");
    let clip = clip(&dir);
    let (web, log) = http_server(clip);
    let port = start_server(Duration::from_secs(30));
    rt().block_on(async {
        let (mut c, pipe) = Client::with_pipeline(port).await.expect("pipeline");
        let p = c
            .create("PlayerEndpoint", json!({"mediaPipeline": pipe, "uri": format!("http://127.0.0.1:{web}/allowed/redirect.webm")}))
            .await
            .expect("player");
        c.subscribe(&p, "EndOfStream").await.expect("subscribe");
        c.invoke(&p, "play", json!({})).await.expect("play");
        assert!(
            c.wait_event("EndOfStream", &p, Duration::from_secs(20)).await.is_some(),
            "the redirected clip plays"
        );
        assert!(!outside(&log).is_empty(), "followed: {:?}", log.lock().unwrap());
        c.request("release", json!({"object": pipe})).await.expect("release");
    });
}

/// An RTSP server on 127.0.0.1 that answers every request with a redirect to `rtsp://` +
/// `to` + `/outside`, and the port of a second one that only logs what it is sent.
fn rtsp_redirector() -> (u16, u16, Log) {
    use std::io::{Read, Write};
    let log: Log = Log::default();
    let target = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let to = target.local_addr().expect("addr").port();
    let sent = log.clone();
    std::thread::spawn(move || {
        for conn in target.incoming() {
            let Ok(mut conn) = conn else { continue };
            let sent = sent.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let text = String::from_utf8_lossy(&buf[..n]).to_string();
                    sent.lock().unwrap().push(format!("/outside/ {text}"));
                }
            });
        }
    });
    let first = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = first.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for conn in first.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let req = String::from_utf8_lossy(&buf[..n]).to_string();
                    let cseq = req
                        .lines()
                        .find_map(|l| l.strip_prefix("CSeq:"))
                        .unwrap_or(" 1")
                        .trim()
                        .to_string();
                    let answer = format!(
                        "RTSP/1.0 302 Moved Temporarily\r\nCSeq: {cseq}\r\nLocation: rtsp://127.0.0.1:{to}/outside\r\nContent-Length: 0\r\n\r\n"
                    );
                    if conn.write_all(answer.as_bytes()).is_err() {
                        break;
                    }
                }
            });
        }
    });
    (port, to, log)
}

#[test]
fn with_an_allow_list_a_player_sends_nothing_where_an_rtsp_server_redirects_it() {
    let (rtsp, to, log) = rtsp_redirector();
    let port = server_allowing(vec![format!("rtsp://127.0.0.1:{rtsp}/")]);
    rt().block_on(async {
        let (mut c, pipe) = Client::with_pipeline(port).await.expect("pipeline");
        let p = c
            .create(
                "PlayerEndpoint",
                json!({"mediaPipeline": pipe, "uri": format!("rtsp://127.0.0.1:{rtsp}/allowed")}),
            )
            .await
            .expect("player");
        c.subscribe(&p, "Error").await.expect("subscribe");
        c.invoke(&p, "play", json!({})).await.expect("play");
        let err = c
            .wait_event("Error", &p, Duration::from_secs(15))
            .await
            .expect("an Error event");
        let text = err["description"].as_str().unwrap_or_default().to_string();
        println!("rtsp redirect: {text}");
        assert!(
            text.contains("redirects to")
                && text.contains(&format!(":{to}/outside"))
                && text.contains("allow-list"),
            "{err}"
        );
        // Time for a request that should not be sent.
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(
            outside(&log).is_empty(),
            "sent to the target: {:?}",
            outside(&log)
        );
        c.request("release", json!({"object": pipe}))
            .await
            .expect("release");
    });
}
