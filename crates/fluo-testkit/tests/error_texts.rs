//! Error texts that bad input produces carry no memory address or Rust `Debug` dump
//! (`/0x[0-9a-f]{6,}|PointerOffset|\{ .*: .* \}/`), and a bad SDP is described by the line
//! at fault and the form it should have. Over a real WebSocket to a real server, so that
//! every layer (str0m, GStreamer, Fluo's own parsers) is the one a client meets.
use fluo_api::text::leaks;
use fluo_testkit::live::{rt, start_server, Client};
use serde_json::{json, Value};
use std::time::Duration;

/// A valid offer (one audio section) to break line by line.
const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:8hhY\r\na=ice-pwd:asd88fgpdd777uzjYhagZg\r\n\
a=fingerprint:sha-256 D2:FA:0E:C3:22:59:5E:14:95:69:92:3D:13:B4:84:24:2C:C2:A2:C0:3E:FD:34:8E:5E:EA:6F:AF:52:CE:E6:0F\r\n\
a=setup:actpass\r\na=mid:0\r\na=sendrecv\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n";

/// Garbage SDPs and the "line N: ..." each must be described with.
fn garbage() -> Vec<(String, &'static str)> {
    let two_codecs = OFFER.replace("a=group:BUNDLE 0", "a=group:BUNDLE 0 1")
        + "m=video 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=sendrecv\r\na=rtpmap:111 VP8/90000\r\n";
    vec![
        ("garbage".into(), "line 1: expected v=0"),
        ("".into(), "line 1: missing, expected v=0"),
        ("\u{0}\u{1}\u{2}".into(), "line 1: expected v=0"),
        ("v=0\r\n".into(), "line 2: missing, expected o=<username> <sess-id> <sess-version> IN IP4|IP6 <address>"),
        (OFFER.replace("v=0", "v=1"), "line 1: expected v=0"),
        (OFFER.replace("o=- 1 2 IN IP4 127.0.0.1", "o=-"), "line 2: expected o=<username> <sess-id> <sess-version> IN IP4|IP6 <address>"),
        (OFFER.replace("s=-\r\n", ""), "line 3: expected s=<session name>"),
        (OFFER.replace("t=0 0", "t=x"), "line 4: expected t=<start time> <stop time>"),
        (OFFER.replace("a=sendrecv\r\n", ""), "line 6: expected exactly one of a=sendrecv, a=sendonly, a=recvonly, a=inactive for mid: 0"),
        (OFFER.replace("a=rtpmap:111 opus/48000/2\r\n", ""), "line 6: missing a=rtp_map:111 for mid: 0"),
        (OFFER.replace("a=mid:0\r\n", ""), "line 6: media is missing a=mid: audio UDP/TLS/RTP/SAVPF"),
        (two_codecs, "line 16: payload type 111 is given different codecs in two m-sections (opus/48000/2 and vp8/90000)"),
    ]
}

fn error_of(r: Result<Value, Value>, what: &str) -> (i64, String) {
    let e = r.expect_err(what);
    let msg = e["message"].as_str().unwrap_or_default().to_string();
    assert!(!leaks(&msg), "{what}: the error text leaks: {msg}");
    (e["code"].as_i64().unwrap_or_default(), msg)
}

#[test]
fn garbage_sdp_is_described_by_line_without_addresses() {
    let port = start_server(Duration::from_secs(30));
    rt().block_on(async {
        let (mut c, pipe) = Client::with_pipeline(port).await.expect("pipeline");
        for (sdp, want) in garbage() {
            let ep = c
                .create("WebRtcEndpoint", json!({"mediaPipeline": pipe}))
                .await
                .expect("endpoint");
            let r = c.invoke(&ep, "processOffer", json!({"offer": sdp})).await;
            let (code, msg) = error_of(r, &format!("processOffer({sdp:?})"));
            assert_eq!(code, 40201, "{msg}");
            assert_eq!(
                msg,
                format!("Cannot parse the SDP offer: {want}"),
                "{sdp:?}"
            );

            // The same text as an answer.
            let ep = c
                .create("WebRtcEndpoint", json!({"mediaPipeline": pipe}))
                .await
                .expect("endpoint");
            c.invoke(&ep, "generateOffer", json!({}))
                .await
                .expect("offer");
            let r = c.invoke(&ep, "processAnswer", json!({"answer": sdp})).await;
            let (code, msg) = error_of(r, &format!("processAnswer({sdp:?})"));
            assert_eq!(code, 40201, "{msg}");
            assert!(
                msg.starts_with("Cannot parse the SDP answer: line "),
                "{sdp:?}: {msg}"
            );
        }

        // Plain RTP (RtpEndpoint has its own SDP reader).
        for (sdp, want) in [
            ("garbage", "line 1: expected v=0"),
            ("\r\n\r\nv=1\r\n", "line 3: expected v=0"),
            (
                "v=0\r\nm=audio\r\n",
                "line 2: expected m=<media> <port> <proto> <fmt>",
            ),
            (
                "v=0\r\nm=audio x RTP/AVP 0\r\n",
                "line 2: expected m=<media> <port> <proto> <fmt>",
            ),
            (
                "v=0\r\nc=IN IP4 nowhere\r\nm=audio 5000 RTP/AVP 0\r\n",
                "line 2: expected c=IN IP4|IP6 <address>",
            ),
            (
                "v=0\r\ns=-\r\n",
                "line 3: missing, expected m=<media> <port> <proto> <fmt> (it has no media)",
            ),
        ] {
            let ep = c
                .create("RtpEndpoint", json!({"mediaPipeline": pipe}))
                .await
                .expect("rtp endpoint");
            let r = c.invoke(&ep, "processOffer", json!({"offer": sdp})).await;
            let (code, msg) = error_of(r, &format!("RtpEndpoint.processOffer({sdp:?})"));
            assert_eq!(code, 40201, "{msg}");
            assert_eq!(msg, format!("Cannot parse the SDP: {want}"));
        }
    });
}

#[test]
fn other_bad_input_reaching_error_texts_leaks_nothing() {
    let port = start_server(Duration::from_secs(30));
    rt().block_on(async {
        let (mut c, pipe) = Client::with_pipeline(port).await.expect("pipeline");
        let ep = c
            .create("WebRtcEndpoint", json!({"mediaPipeline": pipe}))
            .await
            .expect("endpoint");
        for cand in [
            "candidate:garbage",
            "candidate:1 1 udp notanumber 1.2.3.4 5000 typ host",
            "candidate:1 1 udp 1 1.2.3.4 99999 typ host",
            "candidate:1 1 sctp 1 1.2.3.4 5000 typ host",
            "candidate:1 1 udp 1 1.2.3.4 5000 typ Foo { a: b } 0x7f00aa11bb22",
        ] {
            let r = c
                .invoke(
                    &ep,
                    "addIceCandidate",
                    json!({"candidate": {"candidate": cand, "sdpMid": "0", "sdpMLineIndex": 0}}),
                )
                .await;
            let (code, _) = error_of(r, cand);
            assert_eq!(code, 40401);
        }
        let r = c.invoke(&ep, "setTurnUrl", json!({"turnUrl": "garbage@"})).await;
        error_of(r, "setTurnUrl");
        // GStreamer's parser and property checks.
        for command in ["nosuchelement", "videobalance saturation=lots", "videoflip ! ! !", "videobalance hue=9"] {
            let r = c
                .request(
                    "create",
                    json!({"type": "GStreamerFilter", "constructorParams": {"mediaPipeline": pipe, "command": command}}),
                )
                .await
                .expect("a reply");
            let e = &r["error"];
            let msg = e["message"].as_str().unwrap_or_else(|| panic!("{command}: created: {r}"));
            assert!(!leaks(msg), "{command}: {msg}");
        }
        let f = c
            .create(
                "GStreamerFilter",
                json!({"mediaPipeline": pipe, "command": "videobalance saturation=0.5"}),
            )
            .await
            .expect("filter");
        for (name, value) in [("saturation", json!("lots")), ("nosuch", json!(1)), ("saturation", json!(1e300))] {
            let r = c
                .invoke(&f, "setElementProperty", json!({"propertyName": name, "propertyValue": value}))
                .await;
            error_of(r, &format!("setElementProperty {name}"));
        }
        // A player of something that is not media, and of nothing.
        let tmp = fluo_testkit::tmp::dir("junk");
        let junk = tmp.join("junk.webm");
        std::fs::write(&junk, b"not a webm file \x00\x01\x02").expect("junk file");
        for uri in [format!("file://{}", junk.display()), "file:///nonexistent/x.webm".into()] {
            let p = c
                .create("PlayerEndpoint", json!({"mediaPipeline": pipe, "uri": uri}))
                .await
                .expect("player");
            c.subscribe(&p, "Error").await.expect("subscribe");
            match c.invoke(&p, "play", json!({})).await {
                Err(e) => {
                    let msg = e["message"].as_str().unwrap_or_default();
                    assert!(!leaks(msg), "{uri}: {msg}");
                }
                Ok(_) => {
                    let ev = c
                        .wait_event("Error", &p, Duration::from_secs(10))
                        .await
                        .unwrap_or_else(|| panic!("{uri}: an Error event"));
                    let d = ev["description"].as_str().unwrap_or_default();
                    assert!(!d.is_empty() && !leaks(d), "{uri}: {d}");
                }
            }
        }
    });
}
