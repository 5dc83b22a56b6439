//! Publishers and changes the plain cases do not show: a layer that never answers its keyframe
//! requests, layers in two codecs, resent keyframes, a route decided at a layered packet, a
//! layer resized in place.

use super::*;

#[test]
fn a_sink_whose_layer_sends_no_keyframe_starts_on_another_layer_after_two_seconds() {
    let mut w = World::new();
    let cam = w.node("cam");
    let v = w.node("viewer");
    w.r.connect(w.at(0), cam, MediaKind::Video, v).unwrap();
    // Key frames on every layer (their sizes), then a publisher that ignores the requests of
    // each layer's stream: key frames on the 160x120 layer (id 2) once a second, none on the
    // others.
    w.send(0, cam, 0, true);
    w.send(0, cam, 1, true);
    w.send(0, cam, 2, true);
    let (mut first, mut got) = (None, vec![]);
    for i in 1..120u64 {
        let ms = i * 33;
        w.send(ms, cam, 0, false);
        w.send(ms, cam, 1, false);
        w.send(ms, cam, 2, i % 30 == 0);
        got.extend(w.pushes("viewer"));
        if first.is_none() && !got.is_empty() {
            first = Some(ms);
        }
    }
    let first = first.expect("the viewer starts on a layer that sends key frames");
    assert!(
        got[0].2 && got.len() == 30,
        "from its key frame on: {got:?}"
    );
    assert!(got.iter().all(|p| p.0 == Some(2)));
    continuous(&got);
    assert!(
        (LAYER_START_FALLBACK.as_millis() as u64..=3000).contains(&first),
        "{first} ms: not before the fallback, at the first key frame after it"
    );
    let asked = w.asked();
    assert!(
        asked.iter().filter(|a| **a == ("cam", Some(0))).count() >= 2,
        "its own layer is asked until then: {asked:?}"
    );
    let c = w.changes("viewer");
    assert_eq!(
        (c.len(), c[0].rid.as_deref(), c[0].reason),
        (1, Some("q"), SwitchReason::Start)
    );
    // It stays there and still waits for its own layer's key frame, where it moves.
    w.send(3960, cam, 2, false);
    w.send(3960, cam, 1, false);
    w.send(3960, cam, 0, true);
    w.send(3993, cam, 0, false);
    w.send(3993, cam, 2, false);
    let got = w.pushes("viewer");
    let layers: Vec<_> = got.iter().map(|p| p.0).collect();
    assert_eq!(layers, [Some(2), Some(0), Some(0)], "{got:?}");
    assert!(got[1].2, "at the 640x480 key frame");
    let c = w.changes("viewer");
    assert_eq!(
        (c.len(), c[1].rid.as_deref(), c[1].reason),
        (2, Some("f"), SwitchReason::LayerAvailable)
    );
}

#[test]
fn a_layer_in_another_codec_is_dropped_not_decided_again_per_packet() {
    let mut w = World::new();
    w.r.set_transcoders(Arc::new(Maker(w.log.clone())));
    let cam = w.node("cam");
    let any = w.node("any");
    let vp8 = w.node_taking("vp8", Some(CodecName::Vp8));
    w.r.connect(w.at(0), cam, MediaKind::Video, any).unwrap();
    w.r.connect(w.at(0), cam, MediaKind::Video, vp8).unwrap();
    let limits = LayerLimits {
        max: Some(0),
        preferred: None,
        max_temporal: None,
    };
    w.r.set_layer_limits(vp8, MediaKind::Video, limits);
    // f and h in VP8, q in H.264 (a payload type per rid), interleaved: the source's codec is
    // its first packet's, q's packets go nowhere.
    let (idr, inter) = (vec![0x65, 0x88, 0x84], vec![0x41, 0x9a, 0x02]);
    let mut q_out = 0;
    for i in 0..60u64 {
        let ms = i * 33;
        // Key frames where asked.
        let asked = w.keyframes();
        let key = |id: u8| i == 0 || asked.iter().any(|a| a.1.is_none_or(|l| l == id));
        w.send(ms, cam, 0, key(0));
        w.send(ms, cam, 1, key(1));
        let p = if key(2) { &idr } else { &inter };
        q_out += w.send_as(ms, cam, 2, CodecName::H264, p.clone());
    }
    let ev: Vec<_> = std::iter::from_fn(|| w.r.poll_event()).collect();
    let transcoding = ev
        .iter()
        .filter(|(_, e)| matches!(e, MediaEvent::Transcoding { .. }))
        .count();
    let made = w.log.lock().unwrap().made;
    assert_eq!((made, transcoding, q_out), (0, 0, 0), "{ev:?}");
    let (a, v) = (w.pushes("any"), w.pushes("vp8"));
    // Both chose once the layers settled (500 ms: q never counts as sending).
    assert!(a.len() >= 40 && a.iter().all(|p| p.0 == Some(0)), "{a:?}");
    // Limited to the lowest layer that flows: h.
    assert!(v.len() >= 40 && v.iter().all(|p| p.0 == Some(1)), "{v:?}");
    continuous(&a);
    continuous(&v);
    // The publisher changes codec: every layer in H.264 once the VP8 ones stopped for
    // LAYER_IDLE. Taken: one transcoder for the VP8-only sink, the other gets H.264.
    for i in 0..30u64 {
        let ms = 3000 + i * 33;
        for id in 0..3 {
            let p = if i == 0 { &idr } else { &inter };
            w.send_as(ms, cam, id, CodecName::H264, p.clone());
        }
    }
    assert_eq!(w.log.lock().unwrap().made, 1);
    let a = w.pushes("any");
    assert!(a.len() >= 25, "{a:?}");
    assert!(!w.pushes("transcoder").is_empty());
}

#[test]
fn a_route_decided_at_a_layered_packet_asks_its_layers_not_the_whole_source() {
    let mut w = World::new();
    w.r.set_transcoders(Arc::new(Maker(w.log.clone())));
    let cam = w.node("cam");
    let h264 = w.node_taking("h264", Some(CodecName::H264));
    w.r.connect(w.at(0), cam, MediaKind::Video, h264).unwrap();
    // Connecting asked the source, which had no layers yet.
    assert_eq!(w.asked(), [("cam", None)]);
    // The route is decided at the first layered packet: a transcoder, whose decoder needs a
    // keyframe. Asked of the layers (each stream's PLI), not of the source as a whole (a
    // WebRTC publisher's PLI on every rid, past the layers' throttles).
    w.stream(1000, 2000, cam, &[0, 1, 2]);
    assert_eq!(w.log.lock().unwrap().made, 1);
    let asked: Vec<_> = w.asked().into_iter().filter(|a| a.0 == "cam").collect();
    assert!(
        !asked.is_empty() && asked.iter().all(|a| a.1.is_some()),
        "{asked:?}"
    );
    assert!(!w.pushes("transcoder").is_empty());
}

#[test]
fn a_resent_old_keyframe_does_not_answer_a_newer_request() {
    let mut w = World::new();
    let cam = w.node("cam");
    let v = w.node("viewer");
    w.r.connect(w.at(0), cam, MediaKind::Video, v).unwrap();
    w.frame(0, cam, &[0, 1, 2], true);
    w.stream(33, 400, cam, &[0, 1, 2]);
    w.keyframes();
    // The viewer asks twice: the second request waits for the layer's throttle.
    w.r.request_keyframe(w.at(500), v, MediaKind::Video);
    w.r.request_keyframe(w.at(600), v, MediaKind::Video);
    assert_eq!(w.keyframes(), [("cam", Some(0))]);
    // The publisher resends the packet of its first key frame (a late NACK's answer): older
    // than the request, it answers nothing.
    let next = w.seq[0];
    w.seq[0] = 100;
    w.send(650, cam, 0, true);
    w.seq[0] = next;
    w.r.handle_timeout(w.at(800));
    assert_eq!(w.keyframes(), [("cam", Some(0))], "the request still goes");
    // A new key frame does answer one.
    w.r.request_keyframe(w.at(900), v, MediaKind::Video);
    w.send(950, cam, 0, true);
    w.r.handle_timeout(w.at(1100));
    assert_eq!(w.keyframes(), [], "answered by the key frame");
}

#[test]
fn a_sink_is_told_of_its_layers_new_size_and_of_no_layer_through_a_transcoder() {
    let mut w = World::new();
    w.r.set_transcoders(Arc::new(Maker(w.log.clone())));
    let cam = w.node("cam");
    let v = w.node("viewer");
    w.r.connect(w.at(0), cam, MediaKind::Video, v).unwrap();
    w.frame(0, cam, &[0, 1, 2], true);
    w.stream(33, 500, cam, &[0, 1, 2]);
    assert_eq!(w.changes("viewer").len(), 1);
    // The publisher scales its top layer down (a key frame of 480x360): no switch, but the
    // viewer's layer is told with its new size.
    let mut p = vec![0x10, 0x00, 0x2d, 0x01, 0x9d, 0x01, 0x2a];
    p.extend_from_slice(&480u16.to_le_bytes());
    p.extend_from_slice(&360u16.to_le_bytes());
    w.send_as(500, cam, 0, CodecName::Vp8, p);
    w.stream(533, 700, cam, &[0, 1, 2]);
    let c = w.changes("viewer");
    assert_eq!(c.len(), 2, "{c:?}");
    assert_eq!(
        (c[1].rank, c[1].rid.as_deref(), c[1].size, c[1].reason),
        (2, Some("f"), Some((480, 360)), SwitchReason::Start)
    );
    assert!(w.pushes("viewer").iter().all(|p| p.0 == Some(0)));
    // Its codecs change: fed through a transcoder, it gets no layer of the source any more.
    w.log
        .lock()
        .unwrap()
        .takes
        .push(("viewer", CodecName::H264));
    w.r.caps_changed(v);
    w.stream(700, 900, cam, &[0, 1, 2]);
    assert_eq!(w.log.lock().unwrap().made, 1);
    assert_eq!(w.log.lock().unwrap().left, ["viewer"]);
}
