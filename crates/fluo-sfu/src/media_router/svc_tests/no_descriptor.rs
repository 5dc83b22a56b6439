//! AV1 SVC sinks without the dependency descriptor: held to the lowest spatial layer while
//! their source needs it, lifted when they renegotiate with it or the source sends VP9.

use super::*;

#[test]
fn an_av1_sink_without_the_descriptor_is_held_to_s0_and_its_estimate_sees_s0_only() {
    use crate::dependency_descriptor::tests::{key_descriptor, mandatory};
    let mut w = World::new();
    w.r.measure_layer_rates();
    let cam = w.node("cam");
    let (blind, all) = (w.node("no_dd"), w.node("all"));
    for sink in [blind, all] {
        w.r.connect(w.t0, cam, MediaKind::Video, sink).unwrap();
    }
    let key_picture = |w: &mut World, ms: u64, k: u32| {
        let mut key = key_descriptor(0);
        key[0] |= 0x40;
        w.send_av1(ms, cam, &key, false, k);
        w.send_av1(ms, cam, &mandatory(true, true, 4, 1001), false, k);
        w.send_av1(ms, cam, &mandatory(true, true, 8, 1002), true, k);
    };
    for k in 0..4u32 {
        key_picture(&mut w, 33 * u64::from(k), k);
    }
    // A limit and a bandwidth point above S0 lift nothing.
    let max2 = LayerLimits {
        max: Some(2),
        ..LayerLimits::default()
    };
    w.r.set_layer_limits(blind, MediaKind::Video, max2);
    w.r.set_layer_bandwidth_cap(blind, MediaKind::Video, Some(8));
    for k in 4..8u32 {
        key_picture(&mut w, 33 * u64::from(k), k);
    }
    let (pb, pa) = (w.pushes("no_dd"), w.pushes("all"));
    let (b, a) = (pb.len(), pa.len());
    assert!(
        b >= 6 && a == 3 * b,
        "one packet a picture against three: {b} {a}"
    );
    continuous_with_markers(&pb);
    assert_eq!(
        w.changes("no_dd"),
        [(
            0,
            None,
            Some(SIZES[0]),
            SwitchReason::NoDependencyDescriptor
        )]
    );
    assert_eq!(w.changes("all")[0].0, 2);
    // Its estimate is given S0's points only: it neither caps nor probes above them.
    let rates = |n| w.r.layer_rates(n, MediaKind::Video).map(|r| r.0.len());
    let (rb, ra) = (rates(blind), rates(all));
    assert!(
        rb.is_some_and(|b| b >= 1) && ra == rb.map(|b| 3 * b),
        "{rb:?} {ra:?}"
    );
}

#[test]
fn an_av1_sink_renegotiating_with_the_descriptor_is_lifted_and_without_it_held_again() {
    use crate::dependency_descriptor::tests::{key_descriptor, mandatory};
    let mut w = World::new();
    let cam = w.node("cam");
    let blind = w.node("no_dd");
    w.r.connect(w.t0, cam, MediaKind::Video, blind).unwrap();
    let key_picture = |w: &mut World, ms: u64, k: u32| {
        let mut key = key_descriptor(0);
        key[0] |= 0x40;
        w.send_av1(ms, cam, &key, false, k);
        w.send_av1(ms, cam, &mandatory(true, true, 4, 1001), false, k);
        w.send_av1(ms, cam, &mandatory(true, true, 8, 1002), true, k);
    };
    for k in 0..4u32 {
        key_picture(&mut w, 33 * u64::from(k), k);
    }
    let held = w.pushes("no_dd").len();
    assert!((2..=4).contains(&held), "S0 only: {held}");
    // Its peer renegotiates, now with the descriptor: the whole key picture from the next.
    w.no_dd.store(false, Ordering::Relaxed);
    w.r.caps_changed(blind);
    for k in 4..8u32 {
        key_picture(&mut w, 33 * u64::from(k), k);
    }
    let lifted = w.pushes("no_dd");
    assert_eq!(lifted.len(), 12, "three packets a picture: {lifted:?}");
    continuous_with_markers(&lifted);
    let told = w.changes("no_dd");
    assert_eq!(
        told.last(),
        Some(&(
            2,
            None,
            Some(SIZES[2]),
            SwitchReason::NoDependencyDescriptor
        )),
        "{told:?}"
    );
    // And again without it: back to S0.
    w.no_dd.store(true, Ordering::Relaxed);
    w.r.caps_changed(blind);
    for k in 8..12u32 {
        key_picture(&mut w, 33 * u64::from(k), k);
    }
    assert_eq!(w.pushes("no_dd").len(), 4, "S0 only again");
    let told = w.changes("no_dd");
    assert_eq!(
        told.last(),
        Some(&(
            0,
            None,
            Some(SIZES[0]),
            SwitchReason::NoDependencyDescriptor
        )),
        "{told:?}"
    );
}

#[test]
fn a_sink_without_the_descriptor_gets_every_layer_once_its_source_sends_vp9_svc() {
    use crate::dependency_descriptor::tests::{key_descriptor, mandatory};
    let mut w = World::new();
    let cam = w.node("cam");
    let blind = w.node("no_dd");
    w.r.connect(w.t0, cam, MediaKind::Video, blind).unwrap();
    for k in 0..4u32 {
        let ms = 33 * u64::from(k);
        let mut key = key_descriptor(0);
        key[0] |= 0x40;
        w.send_av1(ms, cam, &key, false, k);
        w.send_av1(ms, cam, &mandatory(true, true, 4, 1001), false, k);
        w.send_av1(ms, cam, &mandatory(true, true, 8, 1002), true, k);
    }
    assert!(w.pushes("no_dd").len() <= 4, "AV1: S0 only");
    // The publisher changes codec (no AV1 layer for longer than LAYER_IDLE): VP9's layers
    // are in its payload, the descriptor is not needed, the cap goes.
    w.picture(1000, cam, true);
    w.stream(1033, 2000, cam);
    let p = w.pushes("no_dd");
    assert!(p.iter().any(|p| p.2 == 2), "VP9: S2 too");
    assert_eq!(w.changes("no_dd").last().map(|c| c.0), Some(2));
}
