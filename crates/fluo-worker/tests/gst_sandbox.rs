//! GStreamer inside a sandboxed worker: its plugins load, a pipeline writes a recording into a
//! write path and reads a file from a read path; a file sink outside the write paths and a
//! file source outside the read paths fail with GStreamer's error, the worker going on.

mod common;

use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gstreamer_runs_in_the_sandbox_and_files_stay_within_the_allowed_paths() {
    let dir = std::env::temp_dir().join(format!("fluo-worker-gst-{}", std::process::id()));
    let (media, rec, outside) = (dir.join("media"), dir.join("rec"), dir.join("outside"));
    for d in [&media, &rec, &outside] {
        std::fs::create_dir_all(d).unwrap();
    }
    let mut cfg = config(1);
    cfg.ping_timeout = Duration::from_secs(60);
    cfg.sandbox.read_paths = vec![media.clone()];
    cfg.sandbox.write_paths = vec![rec.clone()];
    let (sup, _) = start(cfg);
    let run = |desc: String| {
        let sup = sup.clone();
        async move {
            let job = sup
                .start_job_async(1, "test.gst", desc.into_bytes(), Rec::new())
                .await?;
            job.call_async("run", vec![]).await.map(|_| ())
        }
    };
    let record = |path: &std::path::Path| {
        format!(
            "videotestsrc num-buffers=15 ! video/x-raw,width=160,height=120 ! vp8enc deadline=1 \
             ! webmmux ! filesink location={}",
            path.display()
        )
    };
    let play = |path: &std::path::Path| {
        format!(
            "filesrc location={} ! matroskademux ! vp8dec ! fakesink",
            path.display()
        )
    };

    // Plugins load and a recording is written where writing is allowed.
    let made = rec.join("a.webm");
    run(record(&made)).await.expect("records into a write path");
    let size = std::fs::metadata(&made).unwrap().len();
    assert!(size > 1000, "{size} bytes");

    // Reading from a read path works; the same file outside the read paths cannot be opened.
    std::fs::copy(&made, media.join("a.webm")).unwrap();
    std::fs::copy(&made, outside.join("a.webm")).unwrap();
    run(play(&media.join("a.webm")))
        .await
        .expect("plays from a read path");
    let err = run(play(&outside.join("a.webm")))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("Could not open"), "{err}");

    // Writing outside the write paths, or into a read path, fails.
    for target in [outside.join("b.webm"), media.join("b.webm")] {
        let err = run(record(&target)).await.unwrap_err().to_string();
        assert!(err.contains("Could not open"), "{err}");
        assert!(!target.exists());
    }

    // The worker survived all of it.
    assert_eq!(sup.stats()[0].restarts, 0);
    sup.shutdown(Duration::from_secs(5)).await;
    let _ = std::fs::remove_dir_all(&dir);
}
