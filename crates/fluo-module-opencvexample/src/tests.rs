use super::*;
use fluo_module::testing::{RgbaFrame, TestHost};

const BLACK: [u8; 4] = [0, 0, 0, 255];
const WHITE: [u8; 4] = [255, 255, 255, 255];

fn example(host: &mut TestHost) -> Box<dyn Instance> {
    OpenCvExample
        .create(host, "OpenCVExample", &Map::new())
        .expect("an OpenCVExample")
}

fn call(
    f: &mut dyn Instance,
    host: &mut TestHost,
    method: &str,
    name: &str,
    n: i64,
) -> Result<Value, KurentoError> {
    let params = Map::from_iter([(name.to_string(), Value::from(n))]);
    f.invoke(host, method, &params)
}

/// The columns of row `y` that are white (an edge) in `frame`; every other pixel of the row
/// must be black.
fn edge_columns(frame: &RgbaFrame, y: u32) -> Vec<u32> {
    (0..frame.width)
        .filter(|&x| match frame.pixel(x, y) {
            WHITE => true,
            BLACK => false,
            other => panic!("({x}, {y}) is neither an edge nor black: {other:?}"),
        })
        .collect()
}

#[test]
fn edges_by_default_one_pixel_wide_white_on_black() {
    let mut host = TestHost::default();
    let mut f = example(&mut host);
    let mut frame = RgbaFrame::filled(32, 8, BLACK);
    frame.fill_rect((16, 0, 16, 8), [200, 40, 40, 255]);
    frame.process(&mut *f, &mut host, 0);
    for y in 0..8 {
        assert_eq!(edge_columns(&frame, y), [15], "row {y}");
    }
    assert!(host.errors.is_empty());
}

/// A 32x8 frame: columns 16.. are grey 50 on black in rows 0..4 (a step of 50: a gradient of
/// 200) and white in rows 4..8 (a gradient of 1020).
fn steps() -> RgbaFrame {
    let mut frame = RgbaFrame::filled(32, 8, BLACK);
    frame.fill_rect((16, 0, 16, 4), [50, 50, 50, 255]);
    frame.fill_rect((16, 4, 16, 4), WHITE);
    frame
}

#[test]
fn the_edge_threshold_is_cannys_other_threshold() {
    let mut host = TestHost::default();
    // Both thresholds 125: both steps are edges.
    let mut f = example(&mut host);
    let mut frame = steps();
    frame.process(&mut *f, &mut host, 0);
    assert_eq!(edge_columns(&frame, 1), [15]);
    assert_eq!(edge_columns(&frame, 6), [15]);
    // 125 and 255: the weak step is an edge where it touches the strong one (hysteresis)...
    call(&mut *f, &mut host, "setEdgeThreshold", "edgeValue", 255).expect("set");
    let mut frame = steps();
    frame.process(&mut *f, &mut host, 1);
    assert_eq!(edge_columns(&frame, 1), [15]);
    // ...and not where it stands alone.
    let mut alone = RgbaFrame::filled(32, 8, BLACK);
    alone.fill_rect((16, 0, 16, 8), [50, 50, 50, 255]);
    alone.process(&mut *f, &mut host, 2);
    assert!(edge_columns(&alone, 3).is_empty());
    // 190 and 125: the lone step's 200 is over the high threshold, 190: an edge again.
    call(&mut *f, &mut host, "setEdgeThreshold", "edgeValue", 190).expect("set");
    let mut alone2 = RgbaFrame::filled(32, 8, BLACK);
    alone2.fill_rect((16, 0, 16, 8), [50, 50, 50, 255]);
    alone2.process(&mut *f, &mut host, 3);
    assert_eq!(edge_columns(&alone2, 3), [15]);
}

#[test]
fn filter_type_1_shows_the_grey_picture() {
    let mut host = TestHost::default();
    let mut f = example(&mut host);
    assert_eq!(
        call(&mut *f, &mut host, "setFilterType", "filterType", 1),
        Ok(Value::Null)
    );
    let mut frame = RgbaFrame::filled(4, 2, [255, 0, 0, 255]);
    frame.fill_rect((2, 0, 2, 2), [0, 0, 255, 128]);
    frame.process(&mut *f, &mut host, 0);
    assert_eq!(frame.pixel(0, 0), [76, 76, 76, 255], "red's luma");
    assert_eq!(frame.pixel(3, 1), [29, 29, 29, 255], "blue's luma, opaque");
    // Back to edges.
    call(&mut *f, &mut host, "setFilterType", "filterType", 0).expect("set");
    let mut frame = RgbaFrame::filled(4, 2, [255, 0, 0, 255]);
    frame.process(&mut *f, &mut host, 1);
    assert_eq!(frame.pixel(0, 0), BLACK, "no edge in one colour");
}

#[test]
fn values_outside_the_kmds_are_refused_with_40107() {
    let mut host = TestHost::default();
    let mut f = example(&mut host);
    for (method, name, n) in [
        ("setFilterType", "filterType", 2),
        ("setFilterType", "filterType", -1),
        ("setEdgeThreshold", "edgeValue", 256),
        ("setEdgeThreshold", "edgeValue", -1),
    ] {
        let e = call(&mut *f, &mut host, method, name, n).expect_err(method);
        assert_eq!(
            e.code,
            ErrorCode::MediaObjectIllegalParamError,
            "{method}({n}): {e:?}"
        );
        assert!(e.message.starts_with("OpenCVExample: "), "{e:?}");
    }
    assert_eq!(
        f.invoke(&mut host, "other", &Map::new())
            .map_err(|e| e.code),
        Err(ErrorCode::MediaObjectOperationNotSupported)
    );
    // The refused values changed nothing: edges still.
    let mut frame = RgbaFrame::filled(8, 2, BLACK);
    frame.fill_rect((4, 0, 4, 2), WHITE);
    frame.process(&mut *f, &mut host, 0);
    assert_eq!(edge_columns(&frame, 0), [3]);
}

#[test]
fn canny_takes_its_thresholds_in_either_order_and_finds_diagonals() {
    // A white triangle under the diagonal of a 16x16 black square.
    let (w, h) = (16, 16);
    let gray: Vec<u8> = (0..w * h)
        .map(|i| if i % w < i / w { 255 } else { 0 })
        .collect();
    let a = canny(&gray, w, h, 50, 125);
    assert_eq!(a, canny(&gray, w, h, 125, 50));
    let on: Vec<(usize, usize)> = (0..w * h)
        .filter(|&i| a[i] == 255)
        .map(|i| (i % w, i / w))
        .collect();
    assert!(!on.is_empty());
    assert!(
        on.iter().all(|&(x, y)| x.abs_diff(y) <= 1),
        "edges on the diagonal only: {on:?}"
    );
    // Every row but the border ones has its edge pixel.
    for y in 1..h - 1 {
        assert!(on.iter().any(|&(_, ey)| ey == y), "row {y}: {on:?}");
    }
    assert!(canny(&gray[..10], w, h, 50, 125).iter().all(|&v| v == 0));
}
