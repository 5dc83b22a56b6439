//! The overlay filters' stage, loads and argument checks.
use super::*;
use gstreamer_app as gst_app;

/// One 320x240 grey frame through an ImageOverlayFilter's stage holding `entries`: the
/// RGB frame that comes out.
fn through_stage(entries: Vec<Entry>) -> Vec<u8> {
    through(Which::Image, entries, 320, &mut |_| {})
}

/// One grey `width` x 240 frame through a stage of `which`; `built` sees the bin.
fn through(
    which: Which,
    entries: Vec<Entry>,
    width: u32,
    built: &mut dyn FnMut(&gst::Bin),
) -> Vec<u8> {
    crate::init().expect("GStreamer");
    let state = Arc::new(Mutex::new(State {
        entries,
        generation: 1,
    }));
    let stage = OverlayStage { which, state };
    let bin = stage.build().expect("the stage builds");
    let p = gst::parse::launch(&format!(
        "videotestsrc num-buffers=1 pattern=solid-color foreground-color=0xff646464 \
         ! video/x-raw,format=I420,width={width},height=240 ! identity name=a \
         identity name=b ! videoconvert ! video/x-raw,format=RGB ! appsink name=s"
    ))
    .expect("pipeline")
    .downcast::<gst::Pipeline>()
    .expect("a pipeline");
    p.add(&bin).expect("add");
    let by = |n: &str| p.by_name(n).expect(n);
    by("a").link(&bin).expect("link in");
    bin.link(&by("b")).expect("link out");
    let sink = by("s").downcast::<gst_app::AppSink>().expect("appsink");
    p.set_state(gst::State::Playing).expect("playing");
    let sample = sink
        .try_pull_sample(gst::ClockTime::from_seconds(10))
        .expect("a frame");
    let data = sample
        .buffer()
        .expect("data")
        .map_readable()
        .expect("map")
        .to_vec();
    built(&bin);
    let _ = p.set_state(gst::State::Null);
    data
}

#[test]
fn the_smallest_face_looked_for_grows_with_frames_wider_than_320() {
    for (width, min) in [(320, 30), (160, 30), (640, 60), (1280, 120)] {
        let mut got = 0;
        through(Which::Face, vec![], width, &mut |bin| {
            let detect = bin
                .iterate_elements()
                .into_iter()
                .flatten()
                .find(|e| e.factory().is_some_and(|f| f.name() == "facedetect"))
                .expect("facedetect in the face stage");
            got = detect.property::<i32>("min-size-width");
            assert_eq!(detect.property::<i32>("min-size-height"), got);
        });
        assert_eq!(got, min, "a {width} wide frame");
    }
}

fn entry(id: &str, place: [f32; 4], rgba: [u8; 4]) -> Entry {
    Entry {
        id: id.into(),
        place,
        keep_aspect: false,
        center: false,
        generation: 1,
        image: Some(Arc::new(Rgba {
            width: 2,
            height: 2,
            data: rgba.repeat(4),
        })),
        cache: None,
    }
}

#[test]
fn an_image_over_the_filters_pixel_budget_is_not_drawn_and_raises_an_error() {
    let dir = tempfile::tempdir().expect("a folder");
    let path = dir.path().join("small.png");
    std::fs::write(&path, load::tests::encoded("pngenc", "RGBA", 0xffff0000)).expect("png");
    let mut big = entry("big", [0.0, 0.0, 1.0, 1.0], [0, 0, 0, 255]);
    // Only its size counts: 4096x4096 is the whole budget.
    big.image = Some(Arc::new(Rgba {
        width: 4096,
        height: 4096,
        data: vec![],
    }));
    let mut new = entry("new", [0.0, 0.0, 1.0, 1.0], [0, 0, 0, 255]);
    (new.image, new.generation) = (None, 2);
    let state = Arc::new(Mutex::new(State {
        entries: vec![big, new],
        generation: 2,
    }));
    let raised: Arc<Mutex<Vec<String>>> = Arc::default();
    let events: EventSink = {
        let raised = raised.clone();
        Arc::new(move |_: &str, ev: fluo_core::MediaEvent| {
            raised.lock().unwrap().push(format!("{ev:?}"));
        })
    };
    let load = |image: &str, generation| {
        let uri = format!("file://{}", path.display());
        loaded(
            Which::Image,
            &Arc::downgrade(&state),
            "f",
            &events,
            (image.into(), generation, uri, false),
        );
    };
    load("new", 2);
    assert!(lock(&state).entries[1].image.is_none(), "not drawn");
    let got = raised.lock().unwrap().clone();
    assert!(
        got.len() == 1 && got[0].contains("more than"),
        "one Error event about the budget: {got:?}"
    );
    // Within the budget (the big image gone) it loads.
    lock(&state).entries.remove(0);
    load("new", 2);
    assert!(lock(&state).entries[0].image.is_some(), "drawn");
}

#[test]
fn the_stage_draws_each_loaded_image_at_its_fractions() {
    let px = |f: &[u8], x: usize, y: usize| f[(y * 320 + x) * 3..(y * 320 + x) * 3 + 3].to_vec();
    let near = |a: Vec<u8>, b: [u8; 3]| a.iter().zip(b).all(|(x, y)| x.abs_diff(y) <= 12);
    let mut unloaded = entry("c", [0.0, 0.0, 1.0, 1.0], [0, 0, 255, 255]);
    unloaded.image = None;
    let f = through_stage(vec![
        entry("a", [0.5, 0.25, 0.25, 0.5], [255, 0, 255, 255]),
        entry("b", [0.0, 0.0, 0.25, 0.25], [0, 255, 0, 128]),
        unloaded,
    ]);
    assert!(
        near(px(&f, 200, 120), [255, 0, 255]),
        "{:?}",
        px(&f, 200, 120)
    );
    assert!(
        near(px(&f, 150, 120), [100, 100, 100]),
        "{:?}",
        px(&f, 150, 120)
    );
    assert!(
        near(px(&f, 200, 50), [100, 100, 100]),
        "{:?}",
        px(&f, 200, 50)
    );
    assert!(
        near(px(&f, 40, 30), [50, 178, 50]),
        "half-transparent green: {:?}",
        px(&f, 40, 30)
    );
    assert!(
        near(px(&f, 100, 30), [100, 100, 100]),
        "{:?}",
        px(&f, 100, 30)
    );
}

#[test]
fn arguments_are_checked_as_the_methods_take_them() {
    let open = UriPolicy::new(vec![]);
    let args = |uri: &str, x: f64| {
        serde_json::json!({"id": "a", "uri": uri, "offsetXPercent": x, "offsetYPercent": 0,
            "widthPercent": 0.5, "heightPercent": 0.5, "keepAspectRatio": true, "center": true})
        .as_object()
        .cloned()
        .expect("an object")
    };
    let op = parse_op(
        Which::Image,
        "addImage",
        &args("file:///srv/a b.png", 0.25),
        &open,
    );
    match op {
        Some(Ok(Op::Add { uri, place, .. })) => {
            assert_eq!(uri, "file:///srv/a%20b.png");
            assert_eq!(place, [0.25, 0.0, 0.5, 0.5]);
        }
        other => panic!("{other:?}"),
    }
    for (uri, x) in [("ftp://h/a.png", 0.0), ("file:///a.png", 10.5), ("x", 0.0)] {
        let e = parse_op(Which::Image, "addImage", &args(uri, x), &open);
        let e = e.expect("a method").expect_err("refused");
        assert_eq!(
            e.code,
            ErrorCode::MediaObjectIllegalParamError,
            "{}",
            e.message
        );
    }
    let listed = UriPolicy::new(["file:///srv/".to_string()]);
    let refused = parse_op(
        Which::Image,
        "addImage",
        &args("file:///etc/a.png", 0.0),
        &listed,
    );
    assert!(refused.expect("a method").is_err());
    let face = parse_op(Which::Face, "addImage", &args("file:///a.png", 0.0), &open);
    assert!(face.is_none(), "FaceOverlayFilter has no addImage");
    let unset = parse_op(Which::Face, "unsetOverlayedImage", &Map::new(), &open);
    assert_eq!(
        unset.expect("a method").expect("ok"),
        Op::Remove(FACE_ID.into())
    );
}
