//! A WebRTC publisher's simulcast layers as the router sees them (docs/simulcast.md): a
//! layer's id is the place of its rid among the `a=rid` lines of the offer's m-section, in
//! the order of those lines (str0m keeps them as the m-line's receive rids, `rids_rx`, in
//! that order; the order of `a=simulcast:send` is not looked at). Chromium writes its
//! `a=rid` lines in its `sendEncodings` order. The router orders the layers by picture size
//! itself.

use super::Ep;
use fluo_sfu::MediaKind;
use str0m::media::{Mid, Rid, Rids};

/// The rids the endpoint's peer announced it sends on `mid` (none without simulcast).
fn rids(ep: &Ep, mid: Mid) -> &[Rid] {
    match ep.rtc.media(mid).map(|m| m.rids_rx()) {
        Some(Rids::Specific(v)) => v,
        _ => &[],
    }
}

/// The layer id of `rid` on `mid`.
pub(crate) fn layer_of(ep: &Ep, mid: Mid, rid: Rid) -> Option<u8> {
    let at = rids(ep, mid).iter().position(|r| *r == rid)?;
    u8::try_from(at).ok()
}

/// The rids of the layers the peer sends of `kind`, by layer id.
pub(crate) fn layer_rids(ep: &Ep, kind: MediaKind) -> Vec<Rid> {
    ep.mid_of_kind(kind)
        .map(|mid| rids(ep, mid).to_vec())
        .unwrap_or_default()
}
