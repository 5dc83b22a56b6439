//! MediaElement output settings (encoder bitrates, forced formats) and the GStreamer DOT
//! graphs, as the engine checks, keeps and hands them on.

mod common;

use common::H;
use fluo_core::{OutputProps, PipelineDot};
use serde_json::json;
use std::sync::{Arc, Mutex};

fn with_endpoint() -> (H, String, String) {
    let mut h = H::new();
    h.e.register_factory(
        "WebRtcEndpoint",
        Box::new(|_: &fluo_core::FactoryCx<'_>| {
            Ok(Box::new(fluo_core::NoMedia) as Box<dyn fluo_core::Element>)
        }),
    );
    let p = h.create(1, "MediaPipeline", None);
    let e = h.create(1, "WebRtcEndpoint", Some(&p));
    (h, p, e)
}

fn code(h: &mut H, object: &str, op: &str, params: serde_json::Value) -> i64 {
    h.err(
        1,
        "invoke",
        json!({"object": object, "operation": op, "operationParams": params}),
    )
}

type Seen = Arc<Mutex<Vec<(String, Option<OutputProps>)>>>;

fn watch(h: &mut H) -> Seen {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    h.e.set_settings_sink(Arc::new(move |id, props| {
        s.lock().unwrap().push((id.to_string(), props.cloned()));
    }));
    seen
}

#[test]
fn encoder_bitrates_read_back_as_kms_keeps_them_and_reach_the_media_plane() {
    let (mut h, _, e) = with_endpoint();
    let seen = watch(&mut h);
    assert_eq!(h.invoke(1, &e, "getEncoderBitrate", json!({})), 300_000);
    assert_eq!(h.invoke(1, &e, "getMaxEncoderBitrate", json!({})), 0);
    h.invoke(
        1,
        &e,
        "setMaxEncoderBitrate",
        json!({"maxEncoderBitrate": 200_000}),
    );
    // The target follows the new bound down.
    assert_eq!(h.invoke(1, &e, "getEncoderBitrate", json!({})), 200_000);
    h.invoke(
        1,
        &e,
        "setMinEncoderBitrate",
        json!({"minEncoderBitrate": 500_000}),
    );
    assert_eq!(h.invoke(1, &e, "getMinEncoderBitrate", json!({})), 200_000);
    let last = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last.0, e);
    let p = last.1.unwrap();
    assert_eq!(
        (
            p.encoder_bitrate,
            p.min_encoder_bitrate,
            p.max_encoder_bitrate
        ),
        (200_000, 200_000, 200_000)
    );
    assert_eq!(
        code(
            &mut h,
            &e,
            "setEncoderBitrate",
            json!({"encoderBitrate": -1})
        ),
        40107
    );
    assert_eq!(
        code(
            &mut h,
            &e,
            "setEncoderBitrate",
            json!({"encoderBitrate": "fast"})
        ),
        40001
    );
    h.ok(1, "release", json!({"object": e}));
    assert_eq!(seen.lock().unwrap().last().cloned().unwrap(), (e, None));
}

#[test]
fn formats_are_checked_kept_and_refused_where_nothing_is_sent() {
    let (mut h, p, e) = with_endpoint();
    let seen = watch(&mut h);
    let video = |c: &str, n: i64, d: i64| json!({"caps": {"codec": c, "framerate": {"numerator": n, "denominator": d}}});
    h.invoke(1, &e, "setVideoFormat", video("H264", 15, 1));
    h.invoke(
        1,
        &e,
        "setAudioFormat",
        json!({"caps": {"codec": "OPUS", "bitrate": 32_000}}),
    );
    let last = seen.lock().unwrap().last().cloned().unwrap().1.unwrap();
    assert_eq!(last.video, Some(("H264".into(), 15, 1)));
    assert_eq!(last.audio, Some(("OPUS".into(), 32_000)));
    // What KMS refuses (and what no encoder here makes) is refused the same way.
    for caps in [
        video("H265", 30, 1),
        video("RAW", 30, 1),
        video("VP8", 30, 0),
        video("VP8", 500, 1),
    ] {
        assert_eq!(
            code(&mut h, &e, "setVideoFormat", caps.clone()),
            40107,
            "{caps}"
        );
    }
    let audio = |c: &str, b: i64| json!({"caps": {"codec": c, "bitrate": b}});
    assert_eq!(code(&mut h, &e, "setAudioFormat", audio("RAW", 0)), 40107);
    assert_eq!(code(&mut h, &e, "setAudioFormat", audio("OPUS", 10)), 40107);
    // Wrong types and enum values are marshalling errors.
    assert_eq!(code(&mut h, &e, "setAudioFormat", audio("MP3", 0)), 40001);
    assert_eq!(
        code(
            &mut h,
            &e,
            "setVideoFormat",
            json!({"caps": {"codec": "VP8"}})
        ),
        40001
    );
    // A PassThrough forwards its source's media: nothing of its own to format.
    let pt = h.create(1, "PassThrough", Some(&p));
    assert_eq!(
        code(&mut h, &pt, "setVideoFormat", video("VP8", 0, 1)),
        40107
    );
    let n = seen.lock().unwrap().len();
    assert_eq!(n, 2, "refused settings reach nobody");
}

struct FakeDot {
    asked: Mutex<Vec<(Vec<String>, String)>>,
    dumped: Mutex<Vec<(String, String)>>,
}

impl PipelineDot for FakeDot {
    fn graphs(&self, owners: &[String], details: &str) -> Vec<String> {
        self.asked
            .lock()
            .unwrap()
            .push((owners.to_vec(), details.to_string()));
        owners
            .iter()
            .map(|o| {
                format!(
                    "digraph pipeline {{\n  legend [label=\"{o}\"];\n  vp8enc0 -> appsink0;\n}}\n"
                )
            })
            .collect()
    }

    fn dump(&self, name: &str, dot: &str) -> Result<Option<String>, fluo_api::KurentoError> {
        self.dumped
            .lock()
            .unwrap()
            .push((name.to_string(), dot.to_string()));
        Ok(Some("/tmp/x.dot".into()))
    }
}

#[test]
fn dot_graphs_hold_the_gstreamer_pipelines_of_the_elements() {
    let (mut h, p, e) = with_endpoint();
    let dot = Arc::new(FakeDot {
        asked: Mutex::default(),
        dumped: Mutex::default(),
    });
    h.e.set_pipeline_dot(dot.clone());
    let e2 = h.create(1, "WebRtcEndpoint", Some(&p));
    h.invoke(1, &e, "connect", json!({"sink": e2}));
    let g = h.invoke(1, &p, "getGstreamerDot", json!({}));
    let g = g.as_str().unwrap();
    assert!(g.starts_with("digraph pipeline {"), "{g}");
    assert_eq!(g.matches("subgraph cluster_gst_").count(), 2, "{g}");
    assert!(g.contains("legend_0 [") && g.contains("legend_1 ["), "{g}");
    assert!(g.contains("vp8enc0 -> appsink0"), "{g}");
    assert_eq!(g.matches('{').count(), g.matches('}').count(), "{g}");
    assert!(g.trim_end().ends_with('}'));
    assert_eq!(
        dot.asked.lock().unwrap().last().cloned().unwrap(),
        (vec![e.clone(), e2.clone()], "SHOW_ALL".to_string())
    );
    // One element: its own pipelines only; details are passed on.
    let g = h.invoke(
        1,
        &e2,
        "getGstreamerDot",
        json!({"details": "SHOW_CAPS_DETAILS"}),
    );
    assert_eq!(
        g.as_str().unwrap().matches("subgraph cluster_gst_").count(),
        1
    );
    assert_eq!(
        dot.asked.lock().unwrap().last().cloned().unwrap(),
        (vec![e2.clone()], "SHOW_CAPS_DETAILS".to_string())
    );
    assert_eq!(
        code(
            &mut h,
            &p,
            "getGstreamerDot",
            json!({"details": "EVERYTHING"})
        ),
        40001
    );
    h.invoke(1, &p, "dumpGstreamerDot", json!({}));
    let (name, written) = dot.dumped.lock().unwrap().last().cloned().unwrap();
    assert_eq!(name, p);
    assert!(written.contains("subgraph cluster_gst_1"), "{written}");
}
