//! OpenCV's ERROR lines stay out of the server's log: FaceOverlayFilter's `facedetect`, when it
//! is made, tries nose, mouth and eye-pair cascades that Debian does not ship, and OpenCV
//! writes `Can't open file: '.../haarcascade_mcs_nose.xml'` (and mouth, eyepair) for each
//! filter. The server sets `OPENCV_LOG_LEVEL=FATAL` for itself and its workers unless the
//! operator set it (docs/operations.md, "OpenCV's lines"); an operator's `ERROR` brings them
//! back, which also shows that the filter's detector was made in these runs.
mod common;

use common::{clip, start_server_with_env, Client, Server};
use serde_json::json;
use std::time::Duration;

/// The server's log after a player's video went through a FaceOverlayFilter, with `workers`
/// media workers and `env` in its environment.
async fn log_of_a_face_overlay(workers: usize, env: &[(&str, &str)]) -> String {
    let tmp = tempfile::Builder::new()
        .prefix("fluo-opencv-log-")
        .tempdir()
        .expect("temp dir");
    let dir = tmp.path();
    let clip = clip(dir);
    let log = dir.join("fluo.log");
    let program = env!("CARGO_BIN_EXE_fluo");
    let (child, port) = start_server_with_env(program, dir, workers, &[], &log, env);
    let server = Server(child);
    let mut c = Client::connect(port).await;
    let pipe = c
        .create("MediaPipeline", json!({}))
        .await
        .expect("pipeline");
    let uri = format!("file://{}", clip.display());
    let player = c
        .create("PlayerEndpoint", json!({"mediaPipeline": pipe, "uri": uri}))
        .await
        .expect("player");
    let face = c
        .create("FaceOverlayFilter", json!({"mediaPipeline": pipe}))
        .await
        .expect("FaceOverlayFilter");
    c.subscribe(&face, "MediaFlowInStateChanged").await;
    c.invoke(&player, "connect", json!({"sink": face})).await;
    c.invoke(&player, "play", json!({})).await;
    c.wait_flowing(&face, Duration::from_secs(20)).await;
    // Frames through the detector, not only the first.
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(server);
    std::fs::read_to_string(&log).expect("the server's log")
}

fn opencv_errors(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("haarcascade_mcs"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn face_overlay_writes_no_opencv_errors() {
    for workers in [1, 0] {
        let log = log_of_a_face_overlay(workers, &[]).await;
        assert!(
            opencv_errors(&log).is_empty(),
            "with {workers} worker(s): {:?}",
            opencv_errors(&log)
        );
    }
    // The operator's level is kept: ERROR shows the three lines of the one filter.
    let log = log_of_a_face_overlay(1, &[("OPENCV_LOG_LEVEL", "ERROR")]).await;
    let lines = opencv_errors(&log);
    assert_eq!(lines.len(), 3, "{lines:?}");
    for cascade in ["nose", "mouth", "eyepair"] {
        assert!(lines.iter().any(|l| l.contains(cascade)), "{lines:?}");
    }
}
