//! What the layered-stream tests (simulcast, SVC) read back: the `FluoLayerChanged` events, a
//! viewer's `fluoLayer` in its getStats, and whether a viewer's video line is continuous.

use crate::{RtpSeen, World};
use serde_json::{json, Value};

/// The `FluoLayerChanged` events since the last call (their data).
pub fn layer_events(w: &mut World) -> Vec<Value> {
    let evs = w.events();
    evs.into_iter()
        .filter(|(t, _)| t == "FluoLayerChanged")
        .map(|(_, d)| d)
        .collect()
}

/// Endpoint `ep`'s `fluoLayer`, from the outbound entry of its video getStats.
pub fn stats_layer(w: &mut World, ep: &str) -> Value {
    let stats = w.invoke(ep, "getStats", json!({"mediaType": "VIDEO"}));
    let out = (stats.as_object().unwrap().values())
        .find(|v| v["type"] == "outboundrtp")
        .unwrap_or_else(|| panic!("an outbound entry: {stats}"));
    out["fluoLayer"].clone()
}

/// Asserts a viewer's video line: one SSRC, sequence numbers without a gap, timestamps moving
/// forward, the marker bit on the last packet of each picture and only there.
pub fn continuous_with_markers(seen: &[RtpSeen]) {
    let ssrcs: std::collections::BTreeSet<u32> = seen.iter().map(|r| r.ssrc).collect();
    assert_eq!(ssrcs.len(), 1, "one SSRC for the viewer's video");
    for pair in seen.windows(2) {
        assert_eq!(pair[1].seq, pair[0].seq + 1, "no gap: {pair:?}");
        let d = pair[1].ts.wrapping_sub(pair[0].ts);
        assert!(d < 90_000, "timestamps move forward: {pair:?}");
        assert_eq!(
            pair[0].marker,
            d != 0,
            "the marker ends a picture: {pair:?}"
        );
    }
}
