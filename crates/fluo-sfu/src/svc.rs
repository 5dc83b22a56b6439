//! SVC: one VP9 or AV1 stream carrying several spatial and temporal layers, of which each
//! sink gets the layers up to its own target.
//!
//! A publisher encoding with a scalability mode (Chromium's `scalabilityMode: 'L3T3_KEY'`)
//! sends one stream whose packets say which spatial layer (SID: the picture size, 0 the
//! smallest) and temporal layer (TID: the frame rate) they belong to: VP9 in its payload
//! descriptor (RFC 9628), AV1 in the dependency descriptor header extension
//! ([`crate::dependency_descriptor`], read per stream by [`DdLayers`]). Either is read into a
//! [`LayerPacket`]. A sink that may get spatial layer `s` and temporal layer `t` gets the
//! packets with SID <= s and TID <= t and nothing else; the router numbers its line
//! continuously across the packets it skips ([`crate::Rewriter::skip`]) and sets the marker
//! bit on the last packet it gets of each picture (the end of its highest spatial layer's
//! frame).
//!
//! [`SvcFilter`] is one sink's state, fed every packet of the stream as it arrives:
//!
//! - a picture begins where the RTP timestamp changes, at whichever of its packets comes
//!   first; a packet older than the newest seen (by sequence number: a resend, a reordered
//!   one) changes nothing of the state, and goes to the sink if its layers are within the
//!   sink's current ones (but a packet of a new SSRC, or one after [`LATE_MOST`] late ones in
//!   a row, is a restart of the stream and the newest: [`Newest`]);
//! - it starts at a key picture (its first packet: the lowest layer's frame start, not
//!   predicted from earlier pictures);
//! - down (spatial or temporal) at the next picture's first packet;
//! - spatial up by one layer at the first packet of that layer's frame when it is not
//!   predicted from earlier pictures (VP9's P clear, or no reference before the picture: every
//!   layer of a key picture; in `L3T3_KEY` nothing else) and the layer below was forwarded in
//!   the same picture, so a key picture takes a sink from nothing to its target at once;
//! - temporal up at a picture of temporal layer 0, or one layer up at a picture whose TID is
//!   one above the sink's and is a switching-up point (VP9's U; a "switch" DTI).
//!
//! Spatial layers are the simulcast "layers" of [`crate::simulcast`]: ranked by picture size
//! (which is the SID order), chosen by the same [`crate::LayerSelector`]. A sink's temporal
//! target is the least of its application limit (`fluoMaxTemporalLayer`) and, at or above the
//! spatial layer its bandwidth estimate allows, the temporal layer it allows there
//! ([`crate::LayerSelector::temporal_ceiling`]); every layer without either.

use crate::dependency_descriptor::{parse, DdReader, Dti, Structure};
use crate::descriptor::Vp9Layers;

/// Every temporal layer.
pub const ALL_TEMPORAL: u8 = u8::MAX;

/// One packet of a layered stream as a sink's filter sees it, whatever the codec: read from
/// VP9's payload descriptor ([`LayerPacket::vp9`]) or from the dependency descriptor header
/// extension (AV1's, [`DdLayers`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LayerPacket {
    /// The source's SSRC: a new one restarts the stream's order ([`Newest`]).
    pub ssrc: u32,
    /// The source's RTP sequence number: a packet older than the newest the filter saw (a
    /// resend, a reordered one) changes nothing of its state.
    pub seq: u16,
    /// The picture it belongs to: its RTP timestamp, which every layer frame of a picture
    /// shares. A new picture begins where it changes.
    pub picture: u32,
    /// Spatial layer (0: the smallest picture).
    pub spatial: u8,
    /// Temporal layer.
    pub temporal: u8,
    /// It begins its layer frame (VP9's B; the descriptor's start of frame).
    pub begins: bool,
    /// It ends its layer frame (VP9's E; the descriptor's end of frame).
    pub ends: bool,
    /// Its frame is predicted from earlier pictures (VP9's P; with a dependency descriptor,
    /// it refers to a frame before its picture's first): clear on a key picture's layers.
    pub inter_picture: bool,
    /// A temporal switching-up point (VP9's U; with a dependency descriptor, its DTI is
    /// "switch" for the decode target of its own spatial and temporal layer).
    pub switch_up: bool,
}

impl LayerPacket {
    /// A VP9 packet of SSRC `ssrc`, sequence number `seq` and RTP timestamp `ts`, `l` its
    /// descriptor's layers.
    pub fn vp9(l: &Vp9Layers, (ssrc, seq): (u32, u16), ts: u32) -> Self {
        LayerPacket {
            ssrc,
            seq,
            picture: ts,
            spatial: l.sid,
            temporal: l.tid,
            begins: l.begins,
            ends: l.ends,
            inter_picture: l.inter_picture,
            switch_up: l.switch_up,
        }
    }
}

/// Packets in a row older than the newest of a stream after which the stream is taken to
/// have restarted its numbering (the next one is the newest), as the line's rewriter does
/// (`rewrite::MAX_CONSECUTIVE_OLD`).
pub const LATE_MOST: u16 = 64;

/// How a packet stands to the newest one seen of its stream ([`Newest::see`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// The first one, or newer than the newest (by sequence number, same SSRC).
    Newer,
    /// Older than the newest: reordered, or resent after a NACK. It changes no state.
    Late,
    /// Of a new SSRC, or after [`LATE_MOST`] late ones in a row: the stream restarted, and it
    /// is the newest (otherwise a viewer's layers would stay stuck after a restart).
    Restart,
}

/// The newest packet seen of a stream (its SSRC and sequence number) and the run of late
/// ones since: the one rule by which the router, a stream's [`DdLayers`] and each sink's
/// [`SvcFilter`] tell a late packet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Newest {
    newest: Option<(u32, u16)>,
    late: u16,
}

impl Newest {
    /// How packet `seq` of SSRC `ssrc` stands to the newest (see [`Order`]); it is the newest
    /// unless late.
    pub fn see(&mut self, ssrc: u32, seq: u16) -> Order {
        let order = match self.newest {
            None => Order::Newer,
            Some((s, n)) if s == ssrc && (1..0x8000).contains(&seq.wrapping_sub(n)) => Order::Newer,
            Some((s, _)) if s != ssrc || self.late >= LATE_MOST => Order::Restart,
            Some(_) => Order::Late,
        };
        if order == Order::Late {
            self.late += 1;
        } else {
            self.newest = Some((ssrc, seq));
            self.late = 0;
        }
        order
    }
}

/// A stream's dependency descriptors read into [`LayerPacket`]s: the last structure and the
/// first frame number of its newest picture (a frame is predicted from earlier pictures when
/// it refers to a frame before that one).
#[derive(Debug, Clone, Default)]
pub struct DdLayers {
    reader: DdReader,
    /// The newest picture (its RTP timestamp) and the lowest frame number seen of it.
    picture: Option<(u32, u16)>,
    /// The newest packet.
    newest: Newest,
}

impl DdLayers {
    /// The packet of SSRC `ssrc`, sequence number `seq` and RTP timestamp `ts` whose
    /// descriptor is `dd`, and whether the descriptor carried a structure; `None` if it is
    /// refused (see [`crate::dependency_descriptor`]).
    pub fn read(
        &mut self,
        dd: &[u8],
        (ssrc, seq): (u32, u16),
        ts: u32,
    ) -> Option<(LayerPacket, bool)> {
        // A late packet (a resend of a key picture's first packet) is read with the
        // structure it carries, which the stream does not take back.
        let late = self.newest.see(ssrc, seq) == Order::Late;
        let d = if late {
            parse(dd, self.reader.structure()).ok()?.0
        } else {
            self.reader.read(dd).ok()?
        };
        let s = self.reader.structure()?;
        let first = match self.picture {
            Some((t, first)) if t == ts => {
                let lower = (1..0x8000).contains(&first.wrapping_sub(d.frame_number));
                let first = if lower { d.frame_number } else { first };
                self.picture = Some((t, first));
                Some(first)
            }
            _ if late => None,
            _ => {
                self.picture = Some((ts, d.frame_number));
                Some(d.frame_number)
            }
        };
        let switch_up = s
            .target_of(d.spatial, d.temporal)
            .is_some_and(|dt| d.dtis.get(dt) == Dti::Switch);
        let l = LayerPacket {
            ssrc,
            seq,
            picture: ts,
            spatial: d.spatial,
            temporal: d.temporal,
            begins: d.start_of_frame,
            ends: d.end_of_frame,
            // A late packet of an earlier picture: whose first frame is not known.
            inter_picture: first.is_none_or(|f| d.refers_before(f)),
            switch_up,
        };
        Some((l, d.carries_structure))
    }

    /// The stream's last template dependency structure.
    pub fn structure(&self) -> Option<&Structure> {
        self.reader.structure()
    }
}

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
    /// The newest packet it saw.
    newest: Newest,
    /// The current picture (its RTP timestamp).
    picture: Option<u32>,
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

    /// Whether packets of the current picture of spatial layer `spatial` or above,
    /// temporal layer `temporal`, are skipped (for packets missing within the picture, whose layers their
    /// neighbours tell): the sink has no layer yet, does not get this picture, or gets lower
    /// layers only. A missing packet that would have taken the sink up a layer (its frame's
    /// first) does not take it up, so the rest of that frame is skipped as well.
    pub fn would_skip(&self, spatial: u8, temporal: u8) -> bool {
        self.spatial
            .is_none_or(|s| !self.picture_on || spatial > s || temporal > self.temporal)
    }

    /// What to do with the next packet of the stream, `l` its layers and `marker` its marker
    /// bit, for a sink whose target is spatial layer `target.0` and temporal layer
    /// `target.1` ([`ALL_TEMPORAL`]: every one).
    pub fn admit(&mut self, l: &LayerPacket, marker: bool, target: (u8, u8)) -> Verdict {
        let ts = target.0;
        if self.newest.see(l.ssrc, l.seq) == Order::Late {
            return self.late(l, marker, ts);
        }
        if self.picture != Some(l.picture) {
            self.picture = Some(l.picture);
            self.picture_started(l, target);
        }
        let Some(mut cur) = self.spatial.filter(|_| self.picture_on) else {
            return Verdict::Skip;
        };
        let next = cur.checked_add(1) == Some(l.spatial);
        let decodable = !l.inter_picture && self.picture_top == Some(cur);
        if l.begins && next && l.spatial <= ts && decodable {
            cur = l.spatial;
        }
        self.spatial = Some(cur);
        if l.spatial > cur || l.temporal > self.temporal {
            return Verdict::Skip;
        }
        if l.begins {
            self.picture_top = Some(self.picture_top.map_or(l.spatial, |t| t.max(l.spatial)));
        }
        // A key picture takes the sink higher within itself: the end of this layer is not
        // the end of its picture then.
        let rises = self.picture_key && cur < ts;
        Verdict::Forward {
            marker: marker || (l.ends && l.spatial == cur && !rises),
        }
    }

    /// A packet older than the newest seen: forwarded if its layers are within what the
    /// sink gets now (and its picture went to the sink, if it is the current one), with the
    /// marker it would have had; the state stays as it is.
    fn late(&self, l: &LayerPacket, marker: bool, ts: u8) -> Verdict {
        let Some(cur) = self.spatial else {
            return Verdict::Skip;
        };
        let current = self.picture == Some(l.picture);
        if (current && !self.picture_on) || l.spatial > cur || l.temporal > self.temporal {
            return Verdict::Skip;
        }
        let rises = current && self.picture_key && cur < ts;
        Verdict::Forward {
            marker: marker || (l.ends && l.spatial == cur && !rises),
        }
    }

    /// The first packet seen of a picture (its timestamp new): the sink starts (at a key
    /// picture's first packet), goes down to its target, and its temporal layer moves;
    /// whether the picture goes to it.
    fn picture_started(&mut self, l: &LayerPacket, (ts, tt): (u8, u8)) {
        self.picture_top = None;
        self.picture_key = !l.inter_picture;
        match self.spatial {
            None if l.inter_picture || !l.begins || l.spatial != 0 => {
                self.picture_on = false;
                return;
            }
            None => {
                self.spatial = Some(0);
                self.temporal = tt;
            }
            Some(s) if ts < s => self.spatial = Some(ts),
            Some(_) => {}
        }
        let up =
            l.temporal == 0 || (l.switch_up && self.temporal.checked_add(1) == Some(l.temporal));
        if tt < self.temporal {
            self.temporal = tt;
        } else if tt > self.temporal && up {
            self.temporal = if l.temporal == 0 { tt } else { l.temporal };
        }
        self.picture_on = l.temporal <= self.temporal;
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

    thread_local! {
        /// The source's next sequence number and picture (RTP timestamp) in this test.
        static SOURCE: std::cell::Cell<(u16, u32)> = const { std::cell::Cell::new((100, 9000)) };
    }

    /// The source's next sequence number.
    fn next_seq() -> u16 {
        SOURCE.with(|c| {
            let (seq, ts) = c.get();
            c.set((seq.wrapping_add(1), ts));
            seq
        })
    }

    /// The next picture's RTP timestamp.
    fn next_picture() -> u32 {
        SOURCE.with(|c| {
            let (seq, ts) = c.get();
            c.set((seq, ts + 3000));
            ts
        })
    }

    fn verdict(v: Verdict) -> Option<bool> {
        match v {
            Verdict::Skip => None,
            Verdict::Forward { marker } => Some(marker),
        }
    }

    /// What a filter does with `packets`, one picture of the source (the source's marker on
    /// the last one): per packet, `None` skipped, `Some(marker)` forwarded.
    fn run(f: &mut SvcFilter, packets: &[Vec<u8>], target: (u8, u8)) -> Vec<Option<bool>> {
        let n = packets.len();
        let ts = next_picture();
        (packets.iter().enumerate())
            .map(|(i, p)| {
                let l = LayerPacket::vp9(&vp9_layers(p).unwrap(), (1, next_seq()), ts);
                verdict(f.admit(&l, i + 1 == n, target))
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
            let l = LayerPacket::vp9(&vp9_layers(&p).unwrap(), (1, next_seq()), next_picture());
            let v = f.admit(&l, true, (0, ALL_TEMPORAL));
            assert_eq!(
                v,
                Verdict::Forward {
                    marker: want.unwrap()
                }
            );
        }
    }

    /// A packet of layers `(spatial, temporal)`, sequence number `seq`, picture `ts`.
    fn lp(
        seq: u16,
        ts: u32,
        (spatial, temporal): (u8, u8),
        inter: bool,
        b: bool,
        e: bool,
    ) -> LayerPacket {
        LayerPacket {
            ssrc: 1,
            seq,
            picture: ts,
            spatial,
            temporal,
            begins: b,
            ends: e,
            inter_picture: inter,
            switch_up: false,
        }
    }

    /// One picture of three spatial layers of two packets each, from sequence number `seq`.
    fn three_layers(seq: u16, ts: u32, tid: u8, inter: bool) -> Vec<LayerPacket> {
        (0..6u16)
            .map(|i| {
                lp(
                    seq + i,
                    ts,
                    ((i / 2) as u8, tid),
                    inter,
                    i % 2 == 0,
                    i % 2 == 1,
                )
            })
            .collect()
    }

    fn feed(
        f: &mut SvcFilter,
        ps: &[LayerPacket],
        marker_at: u16,
        target: (u8, u8),
    ) -> Vec<Option<bool>> {
        ps.iter()
            .map(|l| verdict(f.admit(l, l.seq == marker_at, target)))
            .collect()
    }

    #[test]
    fn a_late_first_packet_of_an_earlier_picture_changes_nothing_in_a_key_picture() {
        let mut f = SvcFilter::default();
        let top = (0, ALL_TEMPORAL);
        assert_eq!(
            feed(&mut f, &three_layers(0, 0, 0, false), 5, top),
            [F, M, None, None, None, None]
        );
        let inter = three_layers(6, 3000, 0, true);
        assert_eq!(
            feed(&mut f, &inter, 11, top),
            [F, M, None, None, None, None]
        );
        // A key picture and the target 2; the inter picture's first packet (S0, B) resent
        // by the publisher arrives after the key picture's S0.
        let mut key = three_layers(12, 6000, 0, false);
        key.insert(2, inter[0]);
        let got = feed(&mut f, &key, 17, (2, ALL_TEMPORAL));
        // It goes on the line (S0 is the sink's), and the sink still rises through the key
        // picture with the marker on its last packet only (before: the late packet started
        // a "picture", which was not a key picture, and S1's end got a marker).
        assert_eq!(got, [F, F, F, F, F, F, M]);
        assert_eq!(f.spatial(), Some(2));
    }

    #[test]
    fn a_late_packet_of_a_skipped_temporal_layer_does_not_drop_the_picture_it_falls_in() {
        let mut f = SvcFilter::default();
        let t0 = (0, 0);
        let one = |seq: u16, ts: u32, tid: u8, inter: bool| {
            vec![
                lp(seq, ts, (0, tid), inter, true, false),
                lp(seq + 1, ts, (0, tid), inter, false, true),
            ]
        };
        assert_eq!(feed(&mut f, &one(0, 0, 0, false), 1, t0), [F, M]);
        let t2 = one(2, 3000, 2, true);
        assert_eq!(feed(&mut f, &t2, 3, t0), [None, None]);
        // The T2 picture's first packet again, in the middle of the next T0 picture: skipped,
        // and the T0 picture's end still goes (before: it took the T0 picture off).
        let mut t0_pic = one(4, 6000, 0, true);
        t0_pic.insert(1, t2[0]);
        assert_eq!(feed(&mut f, &t0_pic, 5, t0), [F, None, M]);
    }

    #[test]
    fn a_picture_whose_first_packet_is_lost_begins_at_its_timestamp() {
        let mut f = SvcFilter::default();
        let all = (2, ALL_TEMPORAL);
        assert_eq!(
            feed(&mut f, &three_layers(0, 0, 0, false), 5, all),
            [F, F, F, F, F, M]
        );
        // The target falls to S0 and the next picture's first packet is lost: the picture
        // still begins (its timestamp is new), the sink goes down there and S0's end carries
        // its marker (before: the sink stayed at S2 for this picture).
        let inter = three_layers(6, 3000, 0, true);
        let got = feed(&mut f, &inter[1..], 11, (0, ALL_TEMPORAL));
        assert_eq!(got, [M, None, None, None, None]);
        assert_eq!(f.spatial(), Some(0));
        // A waiting sink does not start at a key picture without its first packet.
        let mut w = SvcFilter::default();
        let key = three_layers(12, 6000, 0, false);
        assert_eq!(feed(&mut w, &key[1..], 17, all), [None; 5]);
        assert!(w.wants_key(0));
    }

    /// An `L3T3_KEY` stream's descriptors (see `dependency_descriptor::tests`): per picture,
    /// the template each layer's frame uses (S0's; S1's and S2's are 4 and 8 further).
    fn av1_stream(pictures: &[u8]) -> Vec<(LayerPacket, bool)> {
        use crate::dependency_descriptor::tests::{key_descriptor, mandatory};
        let mut dd = DdLayers::default();
        let mut out = Vec::new();
        let (mut seq, mut frame) = (0u16, 1000u16);
        for (p, &t) in pictures.iter().enumerate() {
            let ts = 3000 * p as u32;
            for s in 0..3u8 {
                let buf = if p == 0 && s == 0 {
                    // The whole frame in this packet: its end too.
                    let mut key = key_descriptor(0);
                    key[0] |= 0x40;
                    key
                } else {
                    mandatory(true, true, t + 4 * s, frame)
                };
                let (l, _) = dd.read(&buf, (1, seq), ts).unwrap();
                out.push((l, s == 2));
                seq += 1;
                frame += 1;
            }
        }
        assert_eq!(dd.structure().map(|s| s.spatial_layers), Some(3));
        out
    }

    #[test]
    fn a_late_packet_does_not_bring_back_an_older_structure() {
        use crate::dependency_descriptor::tests::{key_descriptor, mandatory};
        let mut dd = DdLayers::default();
        assert!(dd.read(&key_descriptor(0), (1, 0), 0).unwrap().1);
        assert!(dd.read(&key_descriptor(40), (1, 10), 3000).unwrap().1);
        // The first key picture's first packet again: read with its own structure...
        let (old, _) = dd.read(&key_descriptor(0), (1, 5), 0).unwrap();
        assert_eq!(
            (old.spatial, old.inter_picture),
            (0, true),
            "late: its picture unknown"
        );
        // ... and the stream's frames still read with the newer one (template 40 + 5: S1).
        assert_eq!(dd.structure().map(|s| s.id), Some(40));
        let (l, _) = dd
            .read(&mandatory(true, true, 45, 1001), (1, 11), 3000)
            .unwrap();
        assert_eq!((l.spatial, l.temporal), (1, 0));
    }

    #[test]
    fn a_restarted_stream_is_read_as_the_newest_not_as_late_packets() {
        use crate::dependency_descriptor::tests::key_descriptor;
        let mut n = Newest::default();
        assert_eq!(n.see(1, 1000), Order::Newer);
        // The numbering jumped back under the same SSRC: late for a run, then the newest.
        for i in 0..LATE_MOST {
            assert_eq!(n.see(1, 10 + i), Order::Late);
        }
        assert_eq!(n.see(1, 10 + LATE_MOST), Order::Restart);
        assert_eq!(n.see(1, 11 + LATE_MOST), Order::Newer);
        assert_eq!(n.see(1, 5), Order::Late);
        // A new SSRC: at once, whatever its numbers.
        assert_eq!(n.see(2, 5), Order::Restart);
        // A stream's descriptors: the key picture of a new SSRC numbered below the old one
        // is a key picture (read as late, its first frame unknown, it would not be).
        let mut dd = DdLayers::default();
        assert!(
            !dd.read(&key_descriptor(0), (1, 1000), 0)
                .unwrap()
                .0
                .inter_picture
        );
        let (l, _) = dd.read(&key_descriptor(0), (2, 10), 3000).unwrap();
        assert!(!l.inter_picture && l.begins);
    }

    #[test]
    fn an_av1_stream_is_filtered_by_its_dependency_descriptors() {
        // Key, T2, T1, T2, T0 (templates 0, 3, 2, 3, 1 for S0).
        let stream = av1_stream(&[0, 3, 2, 3, 1]);
        let layers: Vec<(u8, u8, bool, bool)> = (stream.iter())
            .map(|(l, _)| (l.spatial, l.temporal, l.inter_picture, l.switch_up))
            .collect();
        let key = [
            (0, 0, false, true),
            (1, 0, false, true),
            (2, 0, false, true),
        ];
        assert_eq!(&layers[..3], &key);
        assert_eq!(
            &layers[3..6],
            &[
                (0, 2, true, false),
                (1, 2, true, false),
                (2, 2, true, false)
            ]
        );
        assert_eq!(
            &layers[12..],
            &[(0, 0, true, true), (1, 0, true, true), (2, 0, true, true)]
        );
        let run_av1 = |target: (u8, u8)| {
            let mut f = SvcFilter::default();
            (stream.iter())
                .map(|(l, m)| verdict(f.admit(l, *m, target)))
                .collect::<Vec<_>>()
        };
        // S0 only, its end marked; everything; S0 and S1 at T0 only.
        let s0: Vec<Option<bool>> = (0..15).map(|i| (i % 3 == 0).then_some(true)).collect();
        assert_eq!(run_av1((0, ALL_TEMPORAL)), s0);
        let all: Vec<Option<bool>> = (0..15).map(|i| Some(i % 3 == 2)).collect();
        assert_eq!(run_av1((2, ALL_TEMPORAL)), all);
        let mut t0 = vec![F, M, None];
        t0.extend([None; 9]);
        t0.extend([F, M, None]);
        assert_eq!(run_av1((1, 0)), t0);
    }
}
