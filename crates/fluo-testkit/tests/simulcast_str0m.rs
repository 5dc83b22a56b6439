//! tests/simulcast.rs again with the egress fast path off (what `FLUO_EGRESS=off` selects, and
//! what a session whose SRTP profile the fast path refuses takes): str0m writes each viewer's
//! packets, a simulcast layer's VP8 picture ids through its `Vp8Patch`. Each case passes as
//! there, the one asserting the path it took asserting str0m's.
#[path = "simulcast.rs"]
mod cases;

/// Whether the cases' WebRTC endpoints send through the egress fast path.
const EGRESS: bool = false;

/// A world whose WebRTC endpoints send through str0m (set for this test process before its
/// first endpoint).
fn world() -> fluo_testkit::World {
    assert!(
        fluo_rtc::set_egress(false),
        "set before any endpoint was made"
    );
    fluo_testkit::World::new()
}
