//! The dependency descriptor RTP header extension (the AV1 RTP payload specification,
//! appendix A): what a frame of a scalable stream is, read from the packet's header rather
//! than its payload. Chromium sends it with AV1 (and may with VP9 and H.264) when the track
//! has a scalability mode.
//!
//! Every packet carries the mandatory fields: whether it starts and ends a frame (a frame
//! here is one layer's frame: a picture of three spatial layers is three frames), a frame
//! dependency template id and a frame number. The frame's spatial and temporal layer, its
//! decode target indications (DTIs), the frame numbers it refers to (fdiffs) and its chains
//! come from the template, unless the descriptor carries them itself (custom fields). The
//! templates come in a template dependency structure, sent on key frames, which a frame's
//! template id is relative to (the structure's id, its `template_id_offset`): a reader keeps
//! the last structure per stream ([`DdReader`]).
//!
//! Every read is checked: a descriptor that does not fit its bytes, names a template the
//! structure lacks, or goes past this reader's limits ([`MAX_TEMPLATES`],
//! [`MAX_FDIFFS`], 8 spatial and 8 temporal layers) is refused; nothing panics.

#[cfg(test)]
pub(crate) mod tests;

/// The extension's URI (its `a=extmap` line).
pub const URI: &str =
    "https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension";

/// Templates a structure may have: a template id is 6 bits, so no frame can name more.
pub const MAX_TEMPLATES: usize = 64;
/// Decode targets a structure may have (its count is 5 bits, plus one).
pub const MAX_DECODE_TARGETS: usize = 32;
/// Frame references kept per template or frame; a descriptor with more is refused
/// (libwebrtc's structures have at most two).
pub const MAX_FDIFFS: usize = 8;
/// Spatial (and temporal) layers a structure may have here: the router tells 8 layers apart.
pub const MAX_LAYERS: usize = 8;

/// Why a descriptor is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DdError {
    /// It ends before its fields do (or is shorter than the 3 mandatory bytes).
    Short,
    /// It needs a template dependency structure and none was received yet.
    NoStructure,
    /// Its template id is not one of the structure's (a frame of another structure).
    UnknownTemplate,
    /// It has more templates, layers or references than this reader keeps.
    Limit,
}

/// A decode target indication: what a frame is to one decode target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dti {
    /// Not part of it.
    NotPresent,
    /// Part of it, and no later frame of it refers to this one.
    Discardable,
    /// A switch point: a receiver may start decoding the target here, given its chain.
    Switch,
    /// Part of it, needed by later frames.
    Required,
}

/// The DTIs of a frame or template, two bits per decode target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Dtis(u64);

impl Dtis {
    /// The indication for decode target `dt` (not present beyond the structure's).
    pub fn get(&self, dt: usize) -> Dti {
        if dt >= MAX_DECODE_TARGETS {
            return Dti::NotPresent;
        }
        match (self.0 >> (2 * dt)) & 3 {
            0 => Dti::NotPresent,
            1 => Dti::Discardable,
            2 => Dti::Switch,
            _ => Dti::Required,
        }
    }

    fn set(&mut self, dt: usize, v: u32) {
        if dt < MAX_DECODE_TARGETS {
            self.0 |= u64::from(v & 3) << (2 * dt);
        }
    }
}

/// The frames a frame refers to, as differences of frame number (each at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fdiffs {
    n: u8,
    v: [u16; MAX_FDIFFS],
}

impl Fdiffs {
    /// The differences, in the order sent.
    pub fn as_slice(&self) -> &[u16] {
        &self.v[..usize::from(self.n)]
    }

    fn push(&mut self, d: u16) -> Result<(), DdError> {
        let slot = self.v.get_mut(usize::from(self.n)).ok_or(DdError::Limit)?;
        *slot = d;
        self.n += 1;
        Ok(())
    }
}

/// One frame dependency template of a structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Template {
    /// Spatial layer id.
    pub spatial: u8,
    /// Temporal layer id.
    pub temporal: u8,
    /// Its DTIs.
    pub dtis: Dtis,
    /// Its frame references.
    pub fdiffs: Fdiffs,
    /// Per chain, the difference to the chain's previous frame (4 bits each).
    pub chains: [u8; MAX_DECODE_TARGETS],
}

/// A template dependency structure: the templates and what the decode targets are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Structure {
    /// Its id (`template_id_offset`): template `i` has the id `(id + i) % 64`.
    pub id: u8,
    /// How many decode targets (1 to 32).
    pub decode_targets: u8,
    /// How many chains (0 to `decode_targets`).
    pub chains: u8,
    /// Per decode target, the chain that protects it.
    pub protected_by: [u8; MAX_DECODE_TARGETS],
    /// The templates, in the order sent (by spatial then temporal layer).
    pub templates: Vec<Template>,
    /// Per decode target, its highest spatial and temporal layer.
    pub target_layers: [(u8, u8); MAX_DECODE_TARGETS],
    /// How many spatial layers (the highest id plus one).
    pub spatial_layers: u8,
    /// How many temporal layers (the highest id plus one).
    pub temporal_layers: u8,
    /// Each spatial layer's render size (width, height), lowest first, when sent (a size
    /// above 65535 is kept as 65535).
    pub resolutions: Option<[(u16, u16); MAX_LAYERS]>,
}

impl Structure {
    /// The template with id `template_id`, if the structure has it.
    pub fn template(&self, template_id: u8) -> Option<&Template> {
        let i = (usize::from(template_id) + 64 - usize::from(self.id & 63)) % 64;
        self.templates.get(i)
    }

    /// The decode target whose layers are exactly `(spatial, temporal)`, if any.
    pub fn target_of(&self, spatial: u8, temporal: u8) -> Option<usize> {
        let n = usize::from(self.decode_targets);
        self.target_layers[..n]
            .iter()
            .position(|&l| l == (spatial, temporal))
    }

    /// Every decode target, as an active decode targets bitmask.
    pub fn all_targets(&self) -> u32 {
        ((1u64 << self.decode_targets) - 1) as u32
    }
}

/// One packet's descriptor, its frame's fields resolved through the structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptor {
    /// The packet is its frame's first.
    pub start_of_frame: bool,
    /// The packet is its frame's last.
    pub end_of_frame: bool,
    /// The frame's template id.
    pub template_id: u8,
    /// The frame's number (16 bits, one more per frame of the stream).
    pub frame_number: u16,
    /// The frame's spatial layer id.
    pub spatial: u8,
    /// The frame's temporal layer id.
    pub temporal: u8,
    /// The frame's DTIs (its template's, or its own).
    pub dtis: Dtis,
    /// The frame's references (its template's, or its own).
    pub fdiffs: Fdiffs,
    /// Per chain, the difference to the chain's previous frame.
    pub chains: [u8; MAX_DECODE_TARGETS],
    /// The active decode targets it sets (all of them when it carries a structure without
    /// a bitmask); `None`: unchanged.
    pub active_decode_targets: Option<u32>,
    /// The id of the structure it was read with.
    pub structure_id: u8,
    /// It carries that structure.
    pub carries_structure: bool,
}

impl Descriptor {
    /// Whether the frame refers to a frame numbered before `first`, the number of the first
    /// frame of its picture: whether it is predicted from an earlier picture.
    pub fn refers_before(&self, first: u16) -> bool {
        let within = self.frame_number.wrapping_sub(first);
        self.fdiffs.as_slice().iter().any(|&d| d > within)
    }
}

/// Reads a descriptor, `known` the stream's last structure. Returns it with the structure
/// it carries, if any (which it was read with, and which the stream keeps from then on).
pub fn parse(
    buf: &[u8],
    known: Option<&Structure>,
) -> Result<(Descriptor, Option<Structure>), DdError> {
    if buf.len() < 3 {
        return Err(DdError::Short);
    }
    let mut r = Bits { buf, pos: 0 };
    let start_of_frame = r.flag()?;
    let end_of_frame = r.flag()?;
    let template_id = r.f(6)? as u8;
    let frame_number = r.f(16)? as u16;
    let mut flags = [false; 5];
    if buf.len() > 3 {
        for f in &mut flags {
            *f = r.flag()?;
        }
    }
    let [has_structure, has_active, custom_dtis, custom_fdiffs, custom_chains] = flags;
    let new = if has_structure {
        Some(read_structure(&mut r)?)
    } else {
        None
    };
    let s = new.as_ref().or(known).ok_or(DdError::NoStructure)?;
    let mut active_decode_targets = has_structure.then(|| s.all_targets());
    if has_active {
        active_decode_targets = Some(r.f(u32::from(s.decode_targets))?);
    }
    let t = s.template(template_id).ok_or(DdError::UnknownTemplate)?;
    let mut d = Descriptor {
        start_of_frame,
        end_of_frame,
        template_id,
        frame_number,
        spatial: t.spatial,
        temporal: t.temporal,
        dtis: t.dtis,
        fdiffs: t.fdiffs,
        chains: t.chains,
        active_decode_targets,
        structure_id: s.id,
        carries_structure: has_structure,
    };
    if custom_dtis {
        d.dtis = Dtis::default();
        for dt in 0..usize::from(s.decode_targets) {
            d.dtis.set(dt, r.f(2)?);
        }
    }
    if custom_fdiffs {
        d.fdiffs = Fdiffs::default();
        loop {
            let size = r.f(2)?;
            if size == 0 {
                break;
            }
            d.fdiffs.push(r.f(4 * size)? as u16 + 1)?;
        }
    }
    if custom_chains {
        for c in &mut d.chains[..usize::from(s.chains)] {
            *c = r.f(8)? as u8;
        }
    }
    Ok((d, new))
}

/// The template dependency structure (its syntax, in order).
fn read_structure(r: &mut Bits<'_>) -> Result<Structure, DdError> {
    let id = r.f(6)? as u8;
    let decode_targets = r.f(5)? as u8 + 1;
    let dts = usize::from(decode_targets);
    let mut s = Structure {
        id,
        decode_targets,
        chains: 0,
        protected_by: [0; MAX_DECODE_TARGETS],
        templates: Vec::new(),
        target_layers: [(0, 0); MAX_DECODE_TARGETS],
        spatial_layers: 1,
        temporal_layers: 1,
        resolutions: None,
    };
    read_template_layers(r, &mut s)?;
    for t in &mut s.templates {
        for dt in 0..dts {
            t.dtis.set(dt, r.f(2)?);
        }
    }
    for t in &mut s.templates {
        while r.flag()? {
            t.fdiffs.push(r.f(4)? as u16 + 1)?;
        }
    }
    s.chains = r.ns(u32::from(decode_targets) + 1)? as u8;
    if s.chains > 0 {
        for p in &mut s.protected_by[..dts] {
            *p = r.ns(u32::from(s.chains))? as u8;
        }
        for t in &mut s.templates {
            for c in &mut t.chains[..usize::from(s.chains)] {
                *c = r.f(4)? as u8;
            }
        }
    }
    for dt in 0..dts {
        let of_dt = s
            .templates
            .iter()
            .filter(|t| t.dtis.get(dt) != Dti::NotPresent);
        s.target_layers[dt] = of_dt.fold((0, 0), |(sp, tp), t| {
            (sp.max(t.spatial), tp.max(t.temporal))
        });
    }
    if r.flag()? {
        let mut sizes = [(0u16, 0u16); MAX_LAYERS];
        for size in &mut sizes[..usize::from(s.spatial_layers)] {
            let w = r.f(16)? + 1;
            let h = r.f(16)? + 1;
            *size = (w.min(0xffff) as u16, h.min(0xffff) as u16);
        }
        s.resolutions = Some(sizes);
    }
    Ok(s)
}

/// The templates' spatial and temporal layers (`next_layer_idc` after each).
fn read_template_layers(r: &mut Bits<'_>, s: &mut Structure) -> Result<(), DdError> {
    let (mut spatial, mut temporal) = (0u8, 0u8);
    loop {
        if s.templates.len() >= MAX_TEMPLATES {
            return Err(DdError::Limit);
        }
        s.templates.push(Template {
            spatial,
            temporal,
            ..Template::default()
        });
        match r.f(2)? {
            0 => {}
            1 => temporal += 1,
            2 => {
                temporal = 0;
                spatial += 1;
            }
            _ => break,
        }
        if usize::from(spatial) >= MAX_LAYERS || usize::from(temporal) >= MAX_LAYERS {
            return Err(DdError::Limit);
        }
        s.temporal_layers = s.temporal_layers.max(temporal + 1);
    }
    s.spatial_layers = spatial + 1;
    Ok(())
}

/// A stream's descriptors: the last structure it sent, the decode targets it says are active.
#[derive(Debug, Clone, Default)]
pub struct DdReader {
    structure: Option<Structure>,
    active: u32,
}

impl DdReader {
    /// Reads one packet's descriptor, keeping the structure it carries.
    pub fn read(&mut self, buf: &[u8]) -> Result<Descriptor, DdError> {
        let (d, new) = parse(buf, self.structure.as_ref())?;
        if let Some(s) = new {
            self.structure = Some(s);
        }
        if let Some(a) = d.active_decode_targets {
            self.active = a;
        }
        Ok(d)
    }

    /// The last structure received.
    pub fn structure(&self) -> Option<&Structure> {
        self.structure.as_ref()
    }

    /// The decode targets the sender last said it sends (a bitmask, decode target 0 lowest).
    pub fn active_decode_targets(&self) -> u32 {
        self.active
    }
}

/// A bit reader, most significant bit first; every read checked against the end.
struct Bits<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    /// `n` bits (at most 32) as an unsigned number.
    fn f(&mut self, n: u32) -> Result<u32, DdError> {
        let mut v = 0u32;
        for _ in 0..n.min(32) {
            let byte = *self.buf.get(self.pos / 8).ok_or(DdError::Short)?;
            let bit = (byte >> (7 - self.pos % 8)) & 1;
            v = v << 1 | u32::from(bit);
            self.pos += 1;
        }
        Ok(v)
    }

    fn flag(&mut self) -> Result<bool, DdError> {
        Ok(self.f(1)? == 1)
    }

    /// A number below `n` in the non-symmetric code (`ns(n)`).
    fn ns(&mut self, n: u32) -> Result<u32, DdError> {
        if n == 0 {
            return Err(DdError::Limit);
        }
        let w = 32 - n.leading_zeros();
        let m = (1u32 << w) - n;
        let v = self.f(w - 1)?;
        if v < m {
            return Ok(v);
        }
        let extra = self.f(1)?;
        Ok((v << 1) - m + extra)
    }
}
