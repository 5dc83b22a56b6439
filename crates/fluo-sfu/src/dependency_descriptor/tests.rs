use super::*;
use proptest::prelude::*;

/// A bit writer for hand-built descriptors, most significant bit first.
#[derive(Default)]
struct W {
    bytes: Vec<u8>,
    bits: usize,
}

impl W {
    fn put(&mut self, v: u32, n: u32) -> &mut Self {
        for i in (0..n).rev() {
            if self.bits % 8 == 0 {
                self.bytes.push(0);
            }
            let bit = v.checked_shr(i).map_or(0, |b| b & 1) as u8;
            *self.bytes.last_mut().unwrap() |= bit << (7 - self.bits % 8);
            self.bits += 1;
        }
        self
    }

    fn flag(&mut self, b: bool) -> &mut Self {
        self.put(u32::from(b), 1)
    }

    /// `v` (below `n`) in the non-symmetric code.
    fn ns(&mut self, n: u32, v: u32) -> &mut Self {
        let w = 32 - n.leading_zeros();
        let m = (1u32 << w) - n;
        if v < m {
            self.put(v, w - 1)
        } else {
            let t = v + m;
            self.put(t >> 1, w - 1).put(t & 1, 1)
        }
    }

    fn mandatory(&mut self, start: bool, end: bool, template: u8, frame: u16) -> &mut Self {
        self.flag(start)
            .flag(end)
            .put(u32::from(template), 6)
            .put(u32::from(frame), 16)
    }
}

/// A template as written: spatial, temporal, DTIs (one letter per decode target: `-`, `D`,
/// `S`, `R`), fdiffs, chain diffs, and the `next_layer_idc` after it.
struct T(u8, u8, &'static str, &'static [u16], &'static [u8], u32);

/// Chromium's `L3T3_KEY` as libwebrtc describes it: 9 decode targets (S0T0 .. S2T2), three
/// chains (one per spatial layer), a key and a delta T0 template per spatial layer, then T1
/// and T2 (T0 T2 T1 T2: a T0 frame refers 12 frames back, 4 pictures of 3 layers).
const L3T3_KEY: [T; 12] = [
    T(0, 0, "SSSSSSSSS", &[], &[0, 0, 0], 0),
    T(0, 0, "SSS------", &[12], &[12, 11, 10], 1),
    T(0, 1, "-DS------", &[6], &[6, 5, 4], 1),
    T(0, 2, "--D------", &[3], &[3, 2, 1], 2),
    T(1, 0, "---SSSSSS", &[1], &[1, 1, 1], 0),
    T(1, 0, "---SSS---", &[12], &[1, 12, 11], 1),
    T(1, 1, "----DS---", &[6], &[7, 6, 5], 1),
    T(1, 2, "-----D---", &[3], &[4, 3, 2], 2),
    T(2, 0, "------SSS", &[1], &[2, 1, 1], 0),
    T(2, 0, "------SSS", &[12], &[2, 1, 12], 1),
    T(2, 1, "-------DS", &[6], &[8, 7, 6], 1),
    T(2, 2, "--------D", &[3], &[5, 4, 3], 3),
];

const SIZES: [(u16, u16); 3] = [(320, 180), (640, 360), (1280, 720)];

/// Writes a structure of `templates` with id `offset`, `chains` chains protecting the
/// decode targets as `protected_by` says, and the sizes if given.
fn structure(
    w: &mut W,
    offset: u8,
    templates: &[T],
    dts: usize,
    protected_by: &[u32],
    sizes: Option<&[(u16, u16)]>,
) {
    w.put(u32::from(offset), 6).put(dts as u32 - 1, 5);
    for t in templates {
        w.put(t.5, 2);
    }
    for t in templates {
        for c in t.2.chars() {
            let v = match c {
                '-' => 0,
                'D' => 1,
                'S' => 2,
                _ => 3,
            };
            w.put(v, 2);
        }
    }
    for t in templates {
        for &d in t.3 {
            w.flag(true).put(u32::from(d) - 1, 4);
        }
        w.flag(false);
    }
    let chains = protected_by.iter().max().map_or(0, |m| m + 1);
    w.ns(dts as u32 + 1, chains);
    if chains > 0 {
        for &p in protected_by {
            w.ns(chains, p);
        }
        for t in templates {
            for &c in t.4 {
                w.put(u32::from(c), 4);
            }
        }
    }
    w.flag(sizes.is_some());
    for &(wd, h) in sizes.unwrap_or(&[]) {
        w.put(u32::from(wd) - 1, 16).put(u32::from(h) - 1, 16);
    }
}

/// The first packet of an `L3T3_KEY` key frame (template 0 of structure `offset`): the
/// structure with its sizes, no other field.
pub(crate) fn key_descriptor(offset: u8) -> Vec<u8> {
    let mut w = W::default();
    w.mandatory(true, false, offset, 1000);
    // Structure present, no active bitmask, no custom fields.
    w.flag(true).put(0, 4);
    structure(
        &mut w,
        offset,
        &L3T3_KEY,
        9,
        &[0, 0, 0, 1, 1, 1, 2, 2, 2],
        Some(&SIZES),
    );
    w.bytes
}

fn l3t3_key(offset: u8) -> Structure {
    let (d, s) = parse(&key_descriptor(offset), None).unwrap();
    assert!(d.carries_structure);
    s.unwrap()
}

/// The first packet of an `L1T3` key frame (one spatial layer, three temporal; templates 0
/// key, 1 T0, 2 T1, 3 T2 of structure 0), the whole frame (start and end), no sizes.
pub(crate) fn l1t3_key_descriptor() -> Vec<u8> {
    const L1T3: [T; 4] = [
        T(0, 0, "SSS", &[], &[0], 0),
        T(0, 0, "SSS", &[4], &[4], 1),
        T(0, 1, "-DS", &[2], &[2], 1),
        T(0, 2, "--D", &[1], &[1], 3),
    ];
    let mut w = W::default();
    w.mandatory(true, true, 0, 1).flag(true).put(0, 4);
    structure(&mut w, 0, &L1T3, 3, &[0, 0, 0], None);
    w.bytes
}

/// A descriptor of the three mandatory bytes alone.
pub(crate) fn mandatory(start: bool, end: bool, template: u8, frame: u16) -> Vec<u8> {
    let mut w = W::default();
    w.mandatory(start, end, template, frame);
    w.bytes
}

#[test]
fn a_chromium_like_l3t3_key_structure_is_read_whole() {
    let buf = key_descriptor(60);
    let (d, s) = parse(&buf, None).unwrap();
    let s = s.unwrap();
    assert_eq!((d.start_of_frame, d.end_of_frame), (true, false));
    assert_eq!((d.template_id, d.frame_number), (60, 1000));
    assert_eq!((d.spatial, d.temporal, d.structure_id), (0, 0, 60));
    assert_eq!(
        d.active_decode_targets,
        Some(0x1ff),
        "every target with a new structure"
    );
    assert_eq!(d.fdiffs.as_slice(), &[] as &[u16]);
    assert_eq!(
        (0..9).map(|dt| d.dtis.get(dt)).collect::<Vec<_>>(),
        [Dti::Switch; 9]
    );
    assert_eq!((s.id, s.decode_targets, s.chains), (60, 9, 3));
    assert_eq!((s.spatial_layers, s.temporal_layers), (3, 3));
    assert_eq!(s.templates.len(), 12);
    assert_eq!(&s.protected_by[..9], &[0, 0, 0, 1, 1, 1, 2, 2, 2]);
    let layers: Vec<(u8, u8)> = s
        .templates
        .iter()
        .map(|t| (t.spatial, t.temporal))
        .collect();
    let written: Vec<(u8, u8)> = L3T3_KEY.iter().map(|t| (t.0, t.1)).collect();
    assert_eq!(layers, written);
    assert_eq!(&layers[4..8], &[(1, 0), (1, 0), (1, 1), (1, 2)]);
    // Decode target k is S(k/3) T(k%3).
    let want: Vec<(u8, u8)> = (0..9).map(|k| (k / 3, k % 3)).collect();
    assert_eq!(&s.target_layers[..9], &want[..]);
    assert_eq!(s.target_of(1, 2), Some(5));
    assert_eq!(s.target_of(3, 0), None);
    let sizes = s.resolutions.unwrap();
    assert_eq!(&sizes[..3], &SIZES);
    // Template ids are relative to the structure's id, modulo 64.
    let t5 = s.template((60 + 5) % 64).unwrap();
    assert_eq!(
        (t5.spatial, t5.temporal, t5.fdiffs.as_slice()),
        (1, 0, &[12u16][..])
    );
    assert_eq!(&t5.chains[..3], &[1, 12, 11]);
    assert_eq!(t5.dtis.get(3), Dti::Switch);
    assert_eq!(t5.dtis.get(6), Dti::NotPresent);
    assert_eq!(s.template(60 + 12 - 64), None, "a 13th template");
    assert_eq!(s.template(59), None);
}

#[test]
fn a_frame_is_read_through_the_last_structure() {
    let mut r = DdReader::default();
    // Before any structure: nothing to read a frame with.
    let mut w = W::default();
    w.mandatory(true, true, 3, 7);
    assert_eq!(r.read(&w.bytes), Err(DdError::NoStructure));
    r.read(&key_descriptor(10)).unwrap();
    assert_eq!(r.active_decode_targets(), 0x1ff);
    // The three mandatory bytes alone: template 10 + 6 (S1 T1), frame 7.
    let mut w = W::default();
    w.mandatory(false, true, 16, 7);
    let d = r.read(&w.bytes).unwrap();
    assert_eq!((d.spatial, d.temporal, d.frame_number), (1, 1, 7));
    assert_eq!((d.start_of_frame, d.end_of_frame), (false, true));
    assert_eq!(d.fdiffs.as_slice(), &[6]);
    assert_eq!(
        (d.dtis.get(4), d.dtis.get(5), d.dtis.get(3)),
        (Dti::Discardable, Dti::Switch, Dti::NotPresent)
    );
    assert!(!d.carries_structure && d.active_decode_targets.is_none());
    // A template id of no template of this structure (another structure's frame).
    let mut w = W::default();
    w.mandatory(true, true, 9, 8);
    assert_eq!(r.read(&w.bytes), Err(DdError::UnknownTemplate));
    // A new structure at another id replaces it: id 10 is now nobody's.
    r.read(&key_descriptor(40)).unwrap();
    assert_eq!(r.structure().map(|s| s.id), Some(40));
    let mut w = W::default();
    w.mandatory(true, true, 16, 9);
    assert_eq!(r.read(&w.bytes), Err(DdError::UnknownTemplate));
}

#[test]
fn custom_fields_and_the_active_decode_targets_replace_the_templates() {
    let s = l3t3_key(0);
    let mut w = W::default();
    // Template 9 (S2 T0 delta); active bitmask, custom DTIs, fdiffs and chains.
    w.mandatory(true, false, 9, 500);
    w.flag(false).flag(true).flag(true).flag(true).flag(true);
    w.put(0b000_000_111, 9);
    for dt in 0..9 {
        w.put(if dt == 8 { 3 } else { 0 }, 2);
    }
    // fdiffs 1 (4 bits), 200 (8 bits), 4000 (12 bits), then none.
    w.put(1, 2)
        .put(0, 4)
        .put(2, 2)
        .put(199, 8)
        .put(3, 2)
        .put(3999, 12)
        .put(0, 2);
    w.put(9, 8).put(8, 8).put(255, 8);
    let (d, new) = parse(&w.bytes, Some(&s)).unwrap();
    assert!(new.is_none());
    assert_eq!((d.spatial, d.temporal), (2, 0));
    assert_eq!(d.active_decode_targets, Some(0b111));
    assert_eq!(
        (d.dtis.get(8), d.dtis.get(6)),
        (Dti::Required, Dti::NotPresent)
    );
    assert_eq!(d.fdiffs.as_slice(), &[1, 200, 4000]);
    assert_eq!(&d.chains[..4], &[9, 8, 255, 0]);
    // The reader keeps the active decode targets until told again.
    let mut r = DdReader::default();
    r.read(&key_descriptor(0)).unwrap();
    r.read(&w.bytes).unwrap();
    assert_eq!(r.active_decode_targets(), 0b111);
    let mut w = W::default();
    w.mandatory(true, true, 0, 501);
    r.read(&w.bytes).unwrap();
    assert_eq!(r.active_decode_targets(), 0b111);
}

#[test]
fn a_frame_refers_to_an_earlier_picture_when_a_reference_is_before_its_first_frame() {
    let mut r = DdReader::default();
    let key = r.read(&key_descriptor(0)).unwrap();
    assert!(!key.refers_before(1000), "a key frame refers to nothing");
    // S1's key frame (template 4) refers to S0's of the same picture (1000).
    let mut w = W::default();
    w.mandatory(true, true, 4, 1001);
    let s1 = r.read(&w.bytes).unwrap();
    assert!(!s1.refers_before(1000));
    assert!(
        s1.refers_before(1001),
        "its picture began at itself: S0 was lost"
    );
    // S1's delta (template 5) refers 12 frames back: the previous T0 picture.
    let mut w = W::default();
    w.mandatory(true, true, 5, 1013);
    assert!(r.read(&w.bytes).unwrap().refers_before(1012));
    // Across the 16-bit wrap.
    let mut w = W::default();
    w.mandatory(true, true, 4, 0);
    assert!(!r.read(&w.bytes).unwrap().refers_before(0xffff));
}

#[test]
fn every_truncation_of_a_valid_descriptor_is_refused() {
    let full = key_descriptor(5);
    let s = l3t3_key(5);
    assert!(full.len() > 40, "{} bytes", full.len());
    for n in 0..full.len() {
        let cut = &full[..n];
        let want = match n {
            3 => DdError::NoStructure,
            _ => DdError::Short,
        };
        assert_eq!(parse(cut, None).err(), Some(want), "{n} bytes");
        // With the structure known, three bytes are a valid mandatory-only descriptor (its
        // extended fields are there only when it is longer); any other cut is short.
        let known = parse(cut, Some(&s));
        if n == 3 {
            assert_eq!(known.map(|(d, _)| d.template_id).ok(), Some(5));
        } else {
            assert_eq!(known.err(), Some(DdError::Short), "{n} bytes");
        }
    }
    // Custom fields cut short.
    let mut w = W::default();
    w.mandatory(true, true, 5, 1)
        .flag(false)
        .put(0, 1)
        .put(0b100, 3)
        .put(1, 2);
    assert_eq!(parse(&w.bytes, Some(&s)).err(), Some(DdError::Short));
}

#[test]
fn structures_past_the_limits_are_refused() {
    // 65 templates of one layer.
    let mut w = W::default();
    w.mandatory(true, true, 0, 1).flag(true).put(0, 4);
    w.put(0, 6).put(0, 5);
    for _ in 0..64 {
        w.put(0, 2);
    }
    w.put(3, 2);
    w.put(0, 64);
    assert_eq!(parse(&w.bytes, None).err(), Some(DdError::Limit));
    // Nine spatial layers.
    let mut w = W::default();
    w.mandatory(true, true, 0, 1).flag(true).put(0, 4);
    w.put(0, 6).put(0, 5);
    for _ in 0..8 {
        w.put(2, 2);
    }
    w.put(3, 2).put(0, 64);
    assert_eq!(parse(&w.bytes, None).err(), Some(DdError::Limit));
    // Nine references in one template.
    let mut w = W::default();
    w.mandatory(true, true, 0, 1).flag(true).put(0, 4);
    w.put(0, 6).put(0, 5).put(3, 2).put(2, 2);
    for _ in 0..9 {
        w.flag(true).put(0, 4);
    }
    w.flag(false).put(0, 16);
    assert_eq!(parse(&w.bytes, None).err(), Some(DdError::Limit));
}

#[test]
fn the_non_symmetric_code_reads_what_it_writes() {
    for n in 1..=33u32 {
        for v in 0..n {
            let mut w = W::default();
            w.ns(n, v).put(0, 8);
            let mut r = Bits {
                buf: &w.bytes,
                pos: 0,
            };
            assert_eq!(r.ns(n), Ok(v), "ns({n}) of {v}");
            assert_eq!(r.pos, w.bits - 8);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// Any bytes, alone or after a structure, and a valid descriptor with bytes flipped:
    /// refused or read, never a panic; what is read is within the structure.
    #[test]
    fn random_descriptors_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..80),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
    ) {
        let _ = parse(&bytes, None);
        let s = l3t3_key(0);
        if let Ok((d, new)) = parse(&bytes, Some(&s)) {
            let s = new.as_ref().unwrap_or(&s);
            prop_assert!(d.spatial < s.spatial_layers && d.temporal < s.temporal_layers);
            prop_assert!(d.fdiffs.as_slice().iter().all(|&f| f >= 1));
        }
        let mut key = key_descriptor(0);
        for (at, x) in flips {
            let n = key.len();
            key[at % n] ^= x;
        }
        let mut r = DdReader::default();
        let _ = r.read(&key);
        let _ = r.read(&bytes);
    }
}
