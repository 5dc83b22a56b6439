//! Property-based fuzzing of what a remote peer controls: SDP offers and answers (mutations of
//! real ones, line by line and byte by byte) into processOffer / processAnswer, ICE candidate
//! strings into addIceCandidate, and mutated real datagrams (STUN, DTLS, SRTP) into the media
//! core. Nothing may panic; every SDP gets an answer or a Kurento SDP error, whose text names
//! the line at fault when the SDP does not parse and never carries a memory address or a
//! Rust `Debug` dump; media still flows afterwards. FLUO_FUZZ_CASES sets the case count.
use fluo_api::text::leaks;
use fluo_testkit::World;
use proptest::prelude::*;
use serde_json::json;
use std::time::Duration;
use str0m::media::Direction;

/// Checks an error's text: nothing leaked, and a parse error (40201) names a line.
fn check_text(e: &serde_json::Value) -> Result<(), TestCaseError> {
    let msg = e["message"].as_str().unwrap_or_default();
    prop_assert!(!leaks(msg), "the error text leaks: {}", msg);
    if e["code"] == 40201 {
        let names_line = msg.split("line ").skip(1).any(|rest| {
            rest.split(':')
                .next()
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        });
        prop_assert!(names_line, "a parse error without a line: {}", msg);
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("FLUO_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

#[derive(Debug, Clone)]
enum Edit {
    DropLine(usize),
    DupLine(usize),
    SwapLines(usize, usize),
    FlipByte(usize, u8),
    Truncate(usize),
    InsertLine(usize, String),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<usize>().prop_map(Edit::DropLine),
        any::<usize>().prop_map(Edit::DupLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(a, b)| Edit::FlipByte(a, b)),
        any::<usize>().prop_map(Edit::Truncate),
        (any::<usize>(), "(a|m|c|b|t)=[ -~]{0,40}").prop_map(|(a, l)| Edit::InsertLine(a, l)),
    ]
}

fn apply(sdp: &str, edits: &[Edit]) -> String {
    let mut lines: Vec<String> = sdp.split("\r\n").map(String::from).collect();
    for e in edits {
        let n = lines.len().max(1);
        match e {
            Edit::DropLine(i) if !lines.is_empty() => {
                lines.remove(i % n);
            }
            Edit::DupLine(i) if !lines.is_empty() => {
                let l = lines[i % n].clone();
                lines.insert(i % n, l);
            }
            Edit::SwapLines(a, b) if !lines.is_empty() => lines.swap(a % n, b % n),
            Edit::FlipByte(i, b) if !lines.is_empty() => {
                let l = &mut lines[i % n];
                let mut bytes = l.clone().into_bytes();
                if !bytes.is_empty() {
                    let k = i % bytes.len();
                    bytes[k] ^= b | 1;
                }
                *l = String::from_utf8_lossy(&bytes).into_owned();
            }
            Edit::Truncate(i) if !lines.is_empty() => lines.truncate(i % n),
            Edit::InsertLine(i, l) => lines.insert(i % n, l.clone()),
            _ => {}
        }
    }
    lines.join("\r\n")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn mutated_offers_get_an_answer_or_an_sdp_error(edits in prop::collection::vec(edit(), 1..6)) {
        let mut w = World::new();
        let p = w.create("MediaPipeline", None);
        let ep = w.create("WebRtcEndpoint", Some(&p));
        let b = w.add_browser("b", false);
        let offer = w.browsers[b].offer(Direction::SendRecv);
        let mutated = apply(&offer, &edits);
        let r = w.call("invoke", json!({"object": ep, "operation":"processOffer","operationParams":{"offer": mutated}}));
        match r.get("error") {
            None => prop_assert!(r["result"]["value"].as_str().is_some_and(|a| a.starts_with("v=0"))),
            Some(e) => {
                let code = e["code"].as_i64().unwrap();
                prop_assert!((40200..=40211).contains(&code), "unexpected error {e}");
                check_text(e)?;
            }
        }
        // The engine still works.
        prop_assert_eq!(w.invoke(&ep, "getName", json!({})), json!(ep));
    }

    #[test]
    fn mutated_answers_and_candidates_get_kurento_errors(
        edits in prop::collection::vec(edit(), 1..6),
        cand in "[ -~]{0,120}",
    ) {
        let mut w = World::new();
        let p = w.create("MediaPipeline", None);
        let ep = w.create("WebRtcEndpoint", Some(&p));
        let b = w.add_browser("b", false);
        let offer = w.invoke(&ep, "generateOffer", json!({}));
        let answer = w.browsers[b].answer(offer.as_str().unwrap());
        let mutated = apply(&answer, &edits);
        let r = w.call("invoke", json!({"object": ep, "operation":"processAnswer","operationParams":{"answer": mutated}}));
        if let Some(e) = r.get("error") {
            let code = e["code"].as_i64().unwrap();
            prop_assert!((40200..=40211).contains(&code), "unexpected error {e}");
            check_text(e)?;
        }
        let r = w.call("invoke", json!({"object": ep, "operation":"addIceCandidate","operationParams":{"candidate":{"candidate": cand, "sdpMid":"0","sdpMLineIndex":0}}}));
        if let Some(e) = r.get("error") {
            prop_assert_eq!(e["code"].as_i64().unwrap(), 40401, "{}", e);
            check_text(e)?;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases() / 10 + 1, ..ProptestConfig::default() })]

    /// Real datagrams of a live session (STUN, DTLS, SRTP, SRTCP), mutated and replayed.
    #[test]
    fn mutated_datagrams_do_not_break_a_live_session(
        flips in prop::collection::vec((any::<usize>(), any::<usize>(), any::<u8>()), 1..200),
    ) {
        let mut w = World::new();
        let p = w.create("MediaPipeline", None);
        let ep = w.create("WebRtcEndpoint", Some(&p));
        w.invoke(&ep, "connect", json!({"sink": ep}));
        let b = w.add_browser("b", false);
        w.negotiate_browser_offer(b, &ep, Direction::SendRecv);
        // Record what the browser sends during set-up and some media.
        let mut captured: Vec<Vec<u8>> = vec![];
        for _ in 0..200 {
            let now = w.now.mono;
            w.browsers[b].send_video_frame(now, 1500);
            for (_, dst, data) in w.browsers[b].take_outbox(now) {
                if dst == w.server {
                    captured.push(data);
                }
            }
            w.run(Duration::from_millis(5), Duration::from_millis(1), |_| {});
        }
        prop_assume!(!captured.is_empty());
        let (server, src, now) = (w.server, w.browsers[b].addr, w.now.mono);
        for (which, pos, x) in flips {
            let mut d = captured[which % captured.len()].clone();
            if !d.is_empty() {
                let k = pos % d.len();
                d[k] ^= x | 1;
                if pos % 7 == 0 {
                    d.truncate(k);
                }
            }
            w.core.handle_receive(now, server, src, &d);
        }
        w.settle();
        prop_assert!(w.connect_all(Duration::from_secs(5)));
        let before = w.browsers[b].frames_in[1];
        w.stream(&[b], Duration::from_millis(500));
        prop_assert!(w.browsers[b].frames_in[1] > before, "media still flows");
    }
}
