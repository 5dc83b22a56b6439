use super::*;
use fluo_module_guest::fluo_module::testing::{RgbaFrame, TestHost};
use serde_json::json;

fn params(v: Value) -> Map<String, Value> {
    v.as_object().cloned().expect("an object")
}

/// A black 100x50 frame with a red 10x10 square whose top-left corner is at (`x`, 20).
fn frame_with_pointer(x: usize) -> RgbaFrame {
    let mut f = RgbaFrame::filled(100, 50, [0, 0, 0, 255]);
    for y in 20..30 {
        for px in x..x + 10 {
            let i = (y * 100 + px) * 4;
            f.data[i..i + 4].copy_from_slice(&[230, 10, 10, 255]);
        }
    }
    f
}

#[test]
fn windows_see_the_pointer_come_and_go() {
    let mut host = TestHost::default();
    let region = json!({"topRightCornerX": 0, "topRightCornerY": 20, "width": 10, "height": 10});
    let win = json!({"id": "w1", "upperRightX": 60, "upperRightY": 10, "width": 30, "height": 30});
    let mut f = PointerDetector
        .create(
            &mut host,
            "PointerDetectorFilter",
            &params(json!({"calibrationRegion": region, "windows": [win]})),
        )
        .expect("made");
    // Before the calibration nothing is tracked.
    frame_with_pointer(65).process(&mut *f, &mut host, 0);
    assert!(host.events.is_empty());
    f.invoke(&mut host, "trackColorFromCalibrationRegion", &Map::new())
        .expect("calibrates");
    frame_with_pointer(0).process(&mut *f, &mut host, 1);
    assert!(host.events.is_empty(), "the pointer is in no window");
    frame_with_pointer(65).process(&mut *f, &mut host, 2);
    frame_with_pointer(66).process(&mut *f, &mut host, 3);
    frame_with_pointer(20).process(&mut *f, &mut host, 4);
    let seen: Vec<(String, Value)> = host
        .events
        .iter()
        .map(|(n, fields)| (n.clone(), fields["windowId"].clone()))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("WindowIn".into(), json!("w1")),
            ("WindowOut".into(), json!("w1"))
        ]
    );
    let e = f
        .invoke(&mut host, "addWindow", &params(json!({"window": win})))
        .expect_err("the id is taken");
    assert_eq!(e.code.code(), 40107);
    f.invoke(
        &mut host,
        "removeWindow",
        &params(json!({"windowId": "w1"})),
    )
    .expect("removed");
    assert!(f
        .invoke(
            &mut host,
            "removeWindow",
            &params(json!({"windowId": "w1"}))
        )
        .is_err());
}
