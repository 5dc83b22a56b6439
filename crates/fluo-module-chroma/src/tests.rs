use super::*;
use fluo_module::testing::{RgbaFrame, TestHost};
use serde_json_shim::json;

/// serde_json through the module API's re-exports (the crate depends on nothing else).
mod serde_json_shim {
    macro_rules! json {
        ({$($k:literal : $v:expr),* $(,)?}) => {{
            let mut m = fluo_module::Map::new();
            $( m.insert($k.to_string(), fluo_module::Value::from($v)); )*
            fluo_module::Value::Object(m)
        }};
    }
    pub(crate) use json;
}

const GREEN: [u8; 4] = [20, 200, 30, 255];
const RED: [u8; 4] = [220, 30, 40, 255];
const BLUE: [u8; 4] = [10, 20, 240, 255];

fn params(window: Value) -> Map<String, Value> {
    let mut p = Map::new();
    p.insert("window".into(), window);
    p.insert("backgroundImage".into(), Value::from(""));
    p
}

fn window(x: i64, y: i64, w: i64, h: i64) -> Value {
    json!({"topRightCornerX": x, "topRightCornerY": y, "width": w, "height": h})
}

/// A green 64x48 frame with a red 16x16 square at (40, 20).
fn scene() -> RgbaFrame {
    let mut f = RgbaFrame::filled(64, 48, GREEN);
    f.fill_rect((40, 20, 16, 16), RED);
    f
}

fn filter(host: &mut TestHost) -> Box<dyn Instance> {
    Chroma
        .create(host, "ChromaFilter", &params(window(0, 0, 8, 8)))
        .expect("a ChromaFilter")
}

/// Runs the calibration frames of `scene` through `f`.
fn calibrate_on(f: &mut dyn Instance, host: &mut TestHost, scene: &RgbaFrame) {
    for i in 0..CALIBRATION_FRAMES {
        let mut frame = scene.clone();
        frame.process(f, host, u64::from(i) * 33_000_000);
    }
}

fn set_background(f: &mut dyn Instance, host: &mut TestHost, bg: &RgbaFrame) {
    let mut p = Map::new();
    p.insert("uri".into(), Value::from("file:///bg.png"));
    assert_eq!(f.invoke(host, "setBackground", &p), Ok(Value::Null));
    let (request, uri) = host.loads.last().cloned().expect("a load");
    assert_eq!(uri, "file:///bg.png");
    f.image(host, request, bg.to_image());
}

#[test]
fn the_key_colour_shows_the_background_and_the_shape_stays() {
    let mut host = TestHost::default();
    let mut f = filter(&mut host);
    set_background(&mut *f, &mut host, &RgbaFrame::filled(32, 24, BLUE));
    calibrate_on(&mut *f, &mut host, &scene());
    let mut frame = scene();
    frame.process(&mut *f, &mut host, 0);
    assert_eq!(frame.pixel(2, 2), BLUE, "green field replaced");
    assert_eq!(frame.pixel(30, 40), BLUE, "green field replaced");
    assert_eq!(frame.pixel(48, 28), RED, "the shape kept");
    // A slightly different green (as a codec leaves it) is keyed too.
    let mut frame = RgbaFrame::filled(64, 48, [30, 190, 45, 255]);
    frame.process(&mut *f, &mut host, 33_000_000);
    assert_eq!(frame.pixel(10, 10), BLUE);
    assert!(host.events.is_empty());
}

#[test]
fn without_a_background_nothing_changes() {
    let mut host = TestHost::default();
    let mut f = filter(&mut host);
    let mut frame = scene();
    frame.process(&mut *f, &mut host, 0);
    assert_eq!(frame, scene());
    // unsetBackground: the field shows again.
    set_background(&mut *f, &mut host, &RgbaFrame::filled(8, 8, BLUE));
    assert_eq!(
        f.invoke(&mut host, "unsetBackground", &Map::new()),
        Ok(Value::Null)
    );
    let mut frame = scene();
    frame.process(&mut *f, &mut host, 0);
    assert_eq!(frame, scene());
}

#[test]
fn the_background_is_scaled_to_the_frame() {
    let mut host = TestHost::default();
    let mut f = filter(&mut host);
    // Left half blue, right half white.
    let mut bg = RgbaFrame::filled(4, 2, BLUE);
    bg.fill_rect((2, 0, 2, 2), [255, 255, 255, 255]);
    set_background(&mut *f, &mut host, &bg);
    calibrate_on(&mut *f, &mut host, &scene());
    let mut frame = RgbaFrame::filled(64, 48, GREEN);
    frame.process(&mut *f, &mut host, 0);
    assert_eq!(frame.pixel(5, 40), BLUE);
    assert_eq!(frame.pixel(60, 5), [255, 255, 255, 255]);
}

#[test]
fn an_image_of_an_older_request_is_dropped() {
    let mut host = TestHost::default();
    let mut f = filter(&mut host);
    let mut p = Map::new();
    p.insert("uri".into(), Value::from("file:///old.png"));
    f.invoke(&mut host, "setBackground", &p).expect("set");
    f.invoke(&mut host, "unsetBackground", &Map::new())
        .expect("unset");
    f.image(&mut host, 1, RgbaFrame::filled(8, 8, BLUE).to_image());
    let mut frame = scene();
    frame.process(&mut *f, &mut host, 0);
    assert_eq!(frame, scene(), "the unset background's image is not drawn");
}

#[test]
fn the_calibration_window_picks_the_key() {
    let mut host = TestHost::default();
    // The window on the red square: red is the key, green stays.
    let mut f = Chroma
        .create(&mut host, "ChromaFilter", &params(window(42, 22, 8, 8)))
        .expect("a ChromaFilter");
    set_background(&mut *f, &mut host, &RgbaFrame::filled(8, 8, BLUE));
    calibrate_on(&mut *f, &mut host, &scene());
    let mut frame = scene();
    frame.process(&mut *f, &mut host, 0);
    assert_eq!(frame.pixel(48, 28), BLUE);
    assert_eq!(frame.pixel(2, 2), GREEN);
}

#[test]
fn a_bad_window_or_type_is_refused() {
    let mut host = TestHost::default();
    for w in [window(0, 0, 0, 8), window(-1, 0, 8, 8), json!({"width": 8})] {
        let e = Chroma
            .create(&mut host, "ChromaFilter", &params(w))
            .err()
            .expect("refused");
        assert_eq!(e.code, ErrorCode::MediaObjectIllegalParamError, "{e:?}");
    }
    let e = Chroma
        .create(&mut host, "Other", &params(window(0, 0, 8, 8)))
        .err()
        .expect("refused");
    assert_eq!(e.code, ErrorCode::MediaObjectNotAvailable);
}

#[test]
fn the_constructor_background_is_loaded() {
    let mut host = TestHost::default();
    let mut p = params(window(0, 0, 8, 8));
    p.insert("backgroundImage".into(), Value::from("file:///bg.png"));
    let mut f = Chroma.create(&mut host, "ChromaFilter", &p).expect("made");
    assert_eq!(host.loads, [(1, "file:///bg.png".to_string())]);
    f.image(&mut host, 1, RgbaFrame::filled(8, 8, BLUE).to_image());
    calibrate_on(&mut *f, &mut host, &scene());
    let mut frame = scene();
    frame.process(&mut *f, &mut host, 0);
    assert_eq!(frame.pixel(2, 2), BLUE);
}

#[test]
fn dark_and_grey_first_frames_do_not_make_the_key_and_pass_unchanged() {
    let mut host = TestHost::default();
    let mut f = filter(&mut host);
    set_background(&mut *f, &mut host, &RgbaFrame::filled(8, 8, BLUE));
    // A camera's first frames: black, then grey, many of them.
    for (i, colour) in [[0, 0, 0, 255], [128, 128, 128, 255]]
        .into_iter()
        .enumerate()
    {
        for _ in 0..2 * CALIBRATION_FRAMES {
            let mut frame = RgbaFrame::filled(64, 48, colour);
            frame.process(&mut *f, &mut host, i as u64);
            assert!(frame == RgbaFrame::filled(64, 48, colour), "unchanged");
        }
    }
    // Then the scene: green is the key, calibrated over its frames (unchanged until the
    // last of them).
    for _ in 1..CALIBRATION_FRAMES {
        let mut frame = scene();
        frame.process(&mut *f, &mut host, 0);
        assert!(frame == scene(), "unchanged while calibrating");
    }
    let mut frame = scene();
    frame.process(&mut *f, &mut host, 0);
    assert_eq!(frame.pixel(2, 2), BLUE, "green keyed");
    assert_eq!(frame.pixel(48, 28), RED, "the shape kept");
    // A grey or white pixel is not keyed.
    let mut grey = RgbaFrame::filled(64, 48, [128, 128, 128, 255]);
    grey.process(&mut *f, &mut host, 0);
    assert_eq!(grey.pixel(2, 2), [128, 128, 128, 255]);
}

#[test]
fn the_description_names_the_module() {
    assert_eq!(
        fluo_module::name_and_version(&Chroma),
        Ok(("chroma".to_string(), "7.3.0".to_string()))
    );
}
