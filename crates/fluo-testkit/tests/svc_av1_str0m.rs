//! tests/svc_av1.rs again with the egress fast path off (what `FLUO_EGRESS=off` selects):
//! str0m writes each viewer's packets, the publisher's dependency descriptor with them
//! (fluo-rtc's serializer of the extension).
#[path = "svc_av1.rs"]
mod cases;

/// A world whose WebRTC endpoints send through str0m (set for this test process before its
/// first endpoint).
fn world() -> fluo_testkit::World {
    assert!(
        fluo_rtc::set_egress(false),
        "set before any endpoint was made"
    );
    fluo_testkit::World::new()
}
