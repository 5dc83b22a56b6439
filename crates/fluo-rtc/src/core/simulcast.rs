//! A WebRTC publisher's simulcast layers as the router sees them (docs/simulcast.md): a
//! layer's id is the place of its rid among the `a=rid` lines of the offer's m-section, in
//! the order of those lines (str0m keeps them as the m-line's receive rids, `rids_rx`, in
//! that order; the order of `a=simulcast:send` is not looked at). Chromium writes its
//! `a=rid` lines in its `sendEncodings` order. The router orders the layers by picture size
//! itself.

use super::Ep;
use fluo_sfu::simulcast::MAX_LAYERS;
use fluo_sfu::MediaKind;
use str0m::media::{Mid, Rid, Rids};

/// The rids the endpoint's peer announced it sends on `mid` (none without simulcast).
fn rids(ep: &Ep, mid: Mid) -> &[Rid] {
    match ep.rtc.media(mid).map(|m| m.rids_rx()) {
        Some(Rids::Specific(v)) => v,
        _ => &[],
    }
}

/// A layer id the router drops: a rid the peer did not announce, or one beyond the
/// [`MAX_LAYERS`] the router tells apart (an offer naming more is answered with the first
/// ones only: `sdp::with_at_most_max_layers`).
pub(crate) const DROPPED_LAYER: u8 = u8::MAX;

/// The layer id of a packet with `rid` on `mid`: `None` when the m-line announced no rids
/// (not simulcast: the one stream), its rid's place among them, or [`DROPPED_LAYER`] for a
/// rid not among the first [`MAX_LAYERS`].
pub(crate) fn layer_of(ep: &Ep, mid: Mid, rid: Rid) -> Option<u8> {
    let rids = rids(ep, mid);
    if rids.is_empty() {
        return None;
    }
    let at = rids
        .iter()
        .position(|r| *r == rid)
        .filter(|at| *at < MAX_LAYERS);
    Some(at.map_or(DROPPED_LAYER, |at| at as u8))
}

/// The rids of the layers the peer sends of `kind`, by layer id.
pub(crate) fn layer_rids(ep: &Ep, kind: MediaKind) -> Vec<Rid> {
    ep.mid_of_kind(kind)
        .map(|mid| rids(ep, mid).to_vec())
        .unwrap_or_default()
}
