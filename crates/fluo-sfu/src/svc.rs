//! SVC: one VP9 stream carrying several spatial and temporal layers (RFC 9628), of which each
//! sink gets the layers up to its own target.
//!
//! A publisher encoding with a scalability mode (Chromium's `scalabilityMode: 'L3T3_KEY'`)
//! sends one stream whose packets say in their payload descriptor which spatial layer (SID:
//! the picture size, 0 the smallest) and temporal layer (TID: the frame rate) they belong to.
//! A sink that may get spatial layer `s` and temporal layer `t` gets the packets with SID <= s
//! and TID <= t and nothing else; the router numbers its line continuously across the packets
//! it skips ([`crate::Rewriter::skip`]) and sets the marker bit on the last packet it gets of
//! each picture (the end of its highest spatial layer's frame).
//!
//! [`SvcFilter`] is one sink's state, fed every packet of the stream in order:
//!
//! - it starts at a key picture (its lowest layer's first packet with P clear);
//! - down (spatial or temporal) at the next picture's first packet;
//! - spatial up by one layer at the first packet of that layer's frame when it is not
//!   predicted from earlier pictures (P clear: every layer of a key picture; in `L3T3_KEY`
//!   nothing else) and the layer below was forwarded in the same picture, so a key picture
//!   takes a sink from nothing to its target at once;
//! - temporal up at a picture of temporal layer 0, or one layer up at a picture whose TID is
//!   one above the sink's and carries the switching-up point (U).
//!
//! Spatial layers are the simulcast "layers" of [`crate::simulcast`]: ranked by picture size
//! (which is the SID order), chosen by the same [`crate::LayerSelector`]. A sink's temporal
//! target is the least of its application limit (`fluoMaxTemporalLayer`) and, at or above the
//! spatial layer its bandwidth estimate allows, the temporal layer it allows there
//! ([`crate::LayerSelector::temporal_ceiling`]); every layer without either.

use crate::descriptor::Vp9Layers;

/// Every temporal layer.
pub const ALL_TEMPORAL: u8 = u8::MAX;

/// What to do with a packet of the stream for one sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not for this sink: its line skips it.
    Skip,
    /// On its line, with this marker bit.
    Forward {
        /// The marker bit the sink gets: the source's, or set on the end of the highest
        /// spatial layer it gets.
        marker: bool,
    },
}

/// One sink's layers of an SVC stream (see the [module](self)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SvcFilter {
    /// The spatial layer it gets now (`None`: it waits for a key picture).
    spatial: Option<u8>,
    /// The highest temporal layer it gets now.
    temporal: u8,
    /// The current picture goes to it (its TID is within the sink's).
    picture_on: bool,
    /// The highest spatial layer of the current picture it got a frame start of.
    picture_top: Option<u8>,
    /// The current picture is a key picture.
    picture_key: bool,
}

impl SvcFilter {
    /// The spatial layer the sink gets now (`None`: none yet).
    pub fn spatial(&self) -> Option<u8> {
        self.spatial
    }

    /// The highest temporal layer the sink gets now.
    pub fn temporal(&self) -> u8 {
        self.temporal
    }

    /// Whether the sink waits for a key picture to reach spatial layer `target`.
    pub fn wants_key(&self, target: u8) -> bool {
        self.spatial.is_none_or(|s| target > s)
    }

    /// Whether packets of the current picture of spatial layer `sid` or above, temporal
    /// layer `tid`, are skipped (for packets missing within the picture, whose layers their
    /// neighbours tell): the sink has no layer yet, does not get this picture, or gets lower
    /// layers only. A missing packet that would have taken the sink up a layer (its frame's
    /// first) does not take it up, so the rest of that frame is skipped as well.
    pub fn would_skip(&self, sid: u8, tid: u8) -> bool {
        self.spatial
            .is_none_or(|s| !self.picture_on || sid > s || tid > self.temporal)
    }

    /// What to do with a packet that came late (older than one already seen: reordered, or
    /// resent after a NACK), `l` its layers and `marker` its marker bit: the sink gets it when
    /// it gets its layers now, and nothing changes (a late packet neither starts a picture
    /// nor takes the sink up: the packets after it within its layer frame are gone).
    pub fn late(&self, l: &Vp9Layers, marker: bool) -> Verdict {
        match self.spatial {
            Some(s) if l.sid <= s && l.tid <= self.temporal => Verdict::Forward {
                marker: marker || (l.ends && l.sid == s),
            },
            _ => Verdict::Skip,
        }
    }

    /// What to do with the next packet of the stream, `l` its descriptor's layers and
    /// `marker` its marker bit, for a sink whose target is spatial layer `target.0` and
    /// temporal layer `target.1` ([`ALL_TEMPORAL`]: every one).
    pub fn admit(&mut self, l: &Vp9Layers, marker: bool, target: (u8, u8)) -> Verdict {
        let ts = target.0;
        if l.begins_picture() {
            self.picture_started(l, target);
        }
        let Some(mut cur) = self.spatial.filter(|_| self.picture_on) else {
            return Verdict::Skip;
        };
        if l.begins_picture() && ts < cur {
            cur = ts;
        }
        let next = cur.checked_add(1) == Some(l.sid);
        let decodable = !l.inter_picture && self.picture_top == Some(cur);
        if l.begins && next && l.sid <= ts && decodable {
            cur = l.sid;
        }
        self.spatial = Some(cur);
        if l.sid > cur || l.tid > self.temporal {
            return Verdict::Skip;
        }
        if l.begins {
            self.picture_top = Some(self.picture_top.map_or(l.sid, |t| t.max(l.sid)));
        }
        // A key picture takes the sink higher within itself: the end of this layer is not
        // the end of its picture then.
        let rises = self.picture_key && cur < ts;
        Verdict::Forward {
            marker: marker || (l.ends && l.sid == cur && !rises),
        }
    }

    /// The first packet of a picture: the sink starts (at a key picture), and its temporal
    /// layer moves; whether the picture goes to it.
    fn picture_started(&mut self, l: &Vp9Layers, (_, tt): (u8, u8)) {
        self.picture_top = None;
        self.picture_key = !l.inter_picture;
        if self.spatial.is_none() {
            if l.inter_picture {
                self.picture_on = false;
                return;
            }
            self.spatial = Some(0);
            self.temporal = tt;
        }
        let up = l.tid == 0 || (l.switch_up && self.temporal.checked_add(1) == Some(l.tid));
        if tt < self.temporal {
            self.temporal = tt;
        } else if tt > self.temporal && up {
            self.temporal = if l.tid == 0 { tt } else { l.tid };
        }
        self.picture_on = l.tid <= self.temporal;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::descriptor::vp9_layers;

    /// A VP9 packet's descriptor: I (15-bit id), P, L in non-flexible mode, B, E.
    fn pkt(sid: u8, tid: u8, u: bool, inter: bool, begins: bool, ends: bool) -> Vec<u8> {
        let b0 = 0xa0
            | if inter { 0x40 } else { 0 }
            | if begins { 0x08 } else { 0 }
            | if ends { 0x04 } else { 0 };
        let d = u8::from(sid > 0 && !inter);
        let l = tid << 5 | if u { 0x10 } else { 0 } | sid << 1 | d;
        vec![b0, 0x80, 0x01, l, 0x07, 0xff]
    }

    /// One picture of `layers` spatial layers, two packets each.
    fn picture(tid: u8, u: bool, key: bool, layers: u8) -> Vec<Vec<u8>> {
        let inter = !key;
        (0..layers)
            .flat_map(|s| {
                [
                    pkt(s, tid, u, inter, true, false),
                    pkt(s, tid, u, inter, false, true),
                ]
            })
            .collect()
    }

    /// What a filter does with `packets` (the source's marker on the last one): per packet,
    /// `None` skipped, `Some(marker)` forwarded.
    fn run(f: &mut SvcFilter, packets: &[Vec<u8>], target: (u8, u8)) -> Vec<Option<bool>> {
        let n = packets.len();
        (packets.iter().enumerate())
            .map(|(i, p)| {
                let l = vp9_layers(p).unwrap();
                match f.admit(&l, i + 1 == n, target) {
                    Verdict::Skip => None,
                    Verdict::Forward { marker } => Some(marker),
                }
            })
            .collect()
    }

    const F: Option<bool> = Some(false);
    const M: Option<bool> = Some(true);

    #[test]
    fn a_sink_starts_at_a_key_picture_and_gets_its_layers_with_markers_where_they_end() {
        let mut f = SvcFilter::default();
        // An inter picture first: nothing, it waits.
        assert_eq!(run(&mut f, &picture(0, false, false, 3), (0, 2)), [None; 6]);
        assert!(f.wants_key(0));
        // The key picture: S0 only, the marker on S0's last packet.
        let key = picture(0, false, true, 3);
        assert_eq!(run(&mut f, &key, (0, 2)), [F, M, None, None, None, None]);
        assert_eq!(f.spatial(), Some(0));
        // A sink with the top as target gets all of the key picture, marker as the source's.
        let mut top = SvcFilter::default();
        assert_eq!(run(&mut top, &key, (2, 2)), [F, F, F, F, F, M]);
        assert_eq!((top.spatial(), top.wants_key(2)), (Some(2), false));
        // Two layers of three: the marker at the end of S1.
        let mut mid = SvcFilter::default();
        assert_eq!(run(&mut mid, &key, (1, 2)), [F, F, F, M, None, None]);
    }

    #[test]
    fn spatial_down_at_the_next_picture_and_up_only_at_a_key_picture() {
        let mut f = SvcFilter::default();
        run(&mut f, &picture(0, false, true, 3), (2, 2));
        // Down to S0: from the next picture on.
        let inter = picture(0, false, false, 3);
        assert_eq!(run(&mut f, &inter, (0, 2)), [F, M, None, None, None, None]);
        // Up again: not at an inter picture (its S1 is predicted from earlier pictures)...
        assert_eq!(run(&mut f, &inter, (2, 2)), [F, M, None, None, None, None]);
        assert!(f.wants_key(2));
        // ... but at a key picture, to the target at once.
        let key = picture(0, false, true, 3);
        assert_eq!(run(&mut f, &key, (2, 2)), [F, F, F, F, F, M]);
        assert_eq!(f.spatial(), Some(2));
    }

    #[test]
    fn temporal_layers_above_the_target_are_skipped_and_up_waits_for_a_switch_point() {
        let mut f = SvcFilter::default();
        run(&mut f, &picture(0, false, true, 1), (0, 0));
        // T0 only: the T1 and T2 pictures are skipped.
        assert_eq!(run(&mut f, &picture(2, false, false, 1), (0, 0)), [None; 2]);
        assert_eq!(run(&mut f, &picture(1, false, false, 1), (0, 0)), [None; 2]);
        assert_eq!(run(&mut f, &picture(0, false, false, 1), (0, 0)), [F, M]);
        // The target rises to T2: a T2 picture without U, or one skipping T1, is no switch point.
        assert_eq!(run(&mut f, &picture(2, false, false, 1), (0, 2)), [None; 2]);
        assert_eq!(run(&mut f, &picture(2, true, false, 1), (0, 2)), [None; 2]);
        // T1 with U: up to T1, and its T2 pictures with U from there.
        assert_eq!(run(&mut f, &picture(1, true, false, 1), (0, 2)), [F, M]);
        assert_eq!(f.temporal(), 1);
        assert_eq!(run(&mut f, &picture(2, true, false, 1), (0, 2)), [F, M]);
        assert_eq!(f.temporal(), 2);
        // Down to T0 at once; back up at the next T0 picture.
        assert_eq!(run(&mut f, &picture(1, false, false, 1), (0, 0)), [None; 2]);
        assert_eq!(run(&mut f, &picture(0, false, false, 1), (0, 2)), [F, M]);
        assert_eq!(f.temporal(), 2);
        assert_eq!(run(&mut f, &picture(2, false, false, 1), (0, 2)), [F, M]);
    }

    #[test]
    fn a_stream_without_layer_indices_passes_whole() {
        let mut f = SvcFilter::default();
        // B, E, no L: a plain VP9 key frame, then an inter frame.
        for (p, want) in [([0x8c, 0x01, 0xff], M), ([0xcc, 0x02, 0xff], M)] {
            let l = vp9_layers(&p).unwrap();
            let v = f.admit(&l, true, (0, ALL_TEMPORAL));
            assert_eq!(
                v,
                Verdict::Forward {
                    marker: want.unwrap()
                }
            );
        }
    }
}
