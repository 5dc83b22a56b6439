//! AlphaBlending's layout on the Composite's core: the master port's video fills the output
//! frame (whose size is the master's), the other ports are drawn at the rectangle and z-order
//! setPortProperties gave them (relative to the master's size), blended by their alpha where
//! they have one; a port without properties fills the frame at z-order 1, as in KMS. Before
//! the master's size is known the frame is KMS's default, 640x480.

use super::{lock, Core, State};
use fluo_sfu::MediaKind;
use gstreamer as gst;
use gstreamer::prelude::*;

/// Where one port is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Placement {
    /// The master: the whole frame, at this z-order.
    Master(i32),
    /// x, y, width, height (relative to the master's size, 0..1) and z-order.
    Rect([f64; 4], i32),
}

impl Placement {
    /// The placement as the text a worker's job reads ([`Placement::parse`]).
    pub(crate) fn text(&self) -> String {
        match self {
            Placement::Master(z) => format!("master {z}"),
            Placement::Rect([x, y, w, h], z) => format!("rect {x} {y} {w} {h} {z}"),
        }
    }

    /// Reads [`Placement::text`].
    pub(crate) fn parse(s: &str) -> Result<Placement, String> {
        let bad = || format!("bad placement '{s}'");
        let mut it = s.split_whitespace();
        let kind = it.next().ok_or_else(bad)?;
        let nums: Vec<f64> = it
            .map(|n| n.parse::<f64>().map_err(|_| bad()))
            .collect::<Result<_, _>>()?;
        let z = |v: f64| v as i32;
        match (kind, nums.as_slice()) {
            ("master", [zo]) => Ok(Placement::Master(z(*zo))),
            ("rect", [x, y, w, h, zo]) => Ok(Placement::Rect([*x, *y, *w, *h], z(*zo))),
            _ => Err(bad()),
        }
    }
}

/// The blend's state in its core.
#[derive(Debug, Default)]
pub(crate) struct Blend {
    /// The master port and its z-order.
    master: Option<(u64, i32)>,
    /// The other ports' rectangles and z-orders.
    rects: Vec<(u64, [f64; 4], i32)>,
    /// Each video input's decoded size, as its caps say.
    sizes: Vec<(u64, (i32, i32))>,
}

impl Blend {
    /// Forgets port `id` (it was removed; a removed master leaves no master).
    pub(crate) fn forget(&mut self, id: u64) {
        self.rects.retain(|(p, _, _)| *p != id);
        self.sizes.retain(|(p, _)| *p != id);
        if self.master.is_some_and(|(m, _)| m == id) {
            self.master = None;
        }
    }
}

impl Core {
    /// Places port `id` (setMaster or setPortProperties).
    pub(super) fn place(&self, id: u64, p: Placement) {
        let mut st = lock(&self.state);
        match p {
            Placement::Master(z) => st.blend.master = Some((id, z)),
            Placement::Rect(r, z) => {
                st.blend.rects.retain(|(p, _, _)| *p != id);
                st.blend.rects.push((id, r, z));
            }
        }
        self.layout(&mut st);
    }

    /// Port `id`'s video input is decoded at `w`x`h` (from its caps, on a streaming thread:
    /// the layout is redone on another, as a pipeline change under the state lock may wait
    /// for this one).
    pub(super) fn input_size(self: std::sync::Arc<Self>, id: u64, w: i32, h: i32) {
        let again = move || {
            let mut st = lock(&self.state);
            st.blend.sizes.retain(|(p, _)| *p != id);
            st.blend.sizes.push((id, (w, h)));
            self.layout(&mut st);
        };
        if std::thread::Builder::new()
            .name("fluo-blend-size".into())
            .spawn(again)
            .is_err()
        {
            tracing::warn!("no thread for a blend's relayout");
        }
    }

    /// Draws every video input where the blend puts it, the output at the master's size.
    pub(super) fn blend_layout(&self, st: &State) {
        let b = &st.blend;
        let master = b.master.map(|(id, _)| id);
        let size = master
            .and_then(|m| b.sizes.iter().find(|(p, _)| *p == m))
            .map(|(_, s)| *s)
            .unwrap_or((self.format.width as i32, self.format.height as i32));
        self.resize(size);
        let (w, h) = (f64::from(size.0), f64::from(size.1));
        for id in &st.grid {
            let pad = st
                .ports
                .iter()
                .find(|p| p.id == *id)
                .and_then(|p| p.inputs[MediaKind::Video].as_ref())
                .and_then(|i| i.pad.as_ref());
            let Some(pad) = pad else { continue };
            let rect = b.rects.iter().find(|(p, _, _)| p == id);
            let full = [0.0, 0.0, 1.0, 1.0];
            let (r, z) = match (b.master.filter(|(m, _)| m == id), rect) {
                (Some((_, z)), _) => (full, z),
                (None, Some((_, r, z))) => (*r, *z),
                (None, None) => (full, 1),
            };
            pad.set_property("xpos", (r[0] * w).round() as i32);
            pad.set_property("ypos", (r[1] * h).round() as i32);
            pad.set_property("width", ((r[2] * w).round() as i32).max(1));
            pad.set_property("height", ((r[3] * h).round() as i32).max(1));
            pad.set_property("zorder", z.clamp(1, i32::MAX) as u32);
        }
        tracing::debug!(hub = %self.key, inputs = st.grid.len(), ?master, ?size, "blend layout");
    }

    /// The output frame (and the black background under it) at `size`, if it is not.
    fn resize(&self, (w, h): (i32, i32)) {
        let fps = self.format.fps as i32;
        let caps = gst::Caps::builder("video/x-raw")
            .field("format", "I420")
            .field("width", w)
            .field("height", h)
            .field("framerate", gst::Fraction::new(fps, 1))
            .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
            .build();
        for name in ["bgcaps", "outcaps"] {
            let Some(f) = self.pipeline.by_name(name) else {
                continue;
            };
            if f.property::<gst::Caps>("caps") != caps {
                tracing::debug!(hub = %self.key, w, h, "blend output size");
                f.set_property("caps", caps.clone());
            }
        }
    }
}

/// Records `size` in the blend when `id`'s decoded video says its caps.
pub(crate) fn watch_size(core: std::sync::Weak<Core>, id: u64, src: &gst::Pad) {
    src.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
        if let Some(gst::PadProbeData::Event(ev)) = &info.data {
            if let gst::EventView::Caps(c) = ev.view() {
                let s = c.caps().structure(0);
                let w = s.and_then(|s| s.get::<i32>("width").ok());
                let h = s.and_then(|s| s.get::<i32>("height").ok());
                if let (Some(w), Some(h), Some(core)) = (w, h, core.upgrade()) {
                    core.input_size(id, w, h);
                }
            }
        }
        gst::PadProbeReturn::Ok
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placements_cross_to_a_worker_unchanged() {
        for p in [
            Placement::Master(7),
            Placement::Rect([0.25, 0.5, 0.125, 1.0], -3),
        ] {
            assert_eq!(Placement::parse(&p.text()), Ok(p));
        }
        assert!(Placement::parse("rect 1 2").is_err());
        assert!(Placement::parse("grid 1").is_err());
    }
}
