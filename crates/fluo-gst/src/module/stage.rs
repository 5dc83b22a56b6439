//! A module element's stage in its filter port's pipelines: the decoded video converted to
//! the format the instance asked for, each frame handed to it writable (a pad probe), and
//! converted back for the encoder. After the module panicked, frames are dropped: that
//! element's media stops, nothing else's.

use super::host::Slot;
use crate::filter::Stage;
use fluo_module::{PixelFormat, Plane, VideoFrame};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_video as gst_video;
use std::sync::Arc;

pub(crate) struct ModuleStage {
    pub(crate) slot: Arc<Slot>,
    pub(crate) format: PixelFormat,
}

impl Stage for ModuleStage {
    fn class(&self) -> &'static str {
        self.slot.class()
    }

    fn error(&self) -> fluo_core::MediaError {
        fluo_core::MediaError::Filter
    }

    fn make(&self) -> Result<gst::Element, String> {
        let make = |f: &str| {
            gst::ElementFactory::make(f)
                .build()
                .map_err(|_| format!("the GStreamer element {f} is not installed"))
        };
        let bin = gst::Bin::new();
        let format = match self.format {
            PixelFormat::Rgba => "RGBA",
            PixelFormat::I420 => "I420",
        };
        let caps = gst::Caps::builder("video/x-raw")
            .field("format", format)
            .build();
        let to = make("videoconvert")?;
        let filter = gst::ElementFactory::make("capsfilter")
            .property("caps", &caps)
            .build()
            .map_err(|_| "no capsfilter".to_string())?;
        let back = make("videoconvert")?;
        let chain = [to, filter, back.clone()];
        bin.add_many(&chain).map_err(|e| e.to_string())?;
        gst::Element::link_many(&chain).map_err(|e| e.to_string())?;
        for (el, pad) in [(&chain[0], "sink"), (&back, "src")] {
            let target = el.static_pad(pad).ok_or("no pad")?;
            let g = gst::GhostPad::builder_with_target(&target)
                .map_err(|e| e.to_string())?
                .name(pad)
                .build();
            bin.add_pad(&g).map_err(|e| e.to_string())?;
        }
        let pad = back.static_pad("sink").ok_or("no pad")?;
        let (slot, fmt) = (self.slot.clone(), self.format);
        pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
            if let Some(gst::PadProbeData::Buffer(buffer)) = &mut info.data {
                if !process(pad, buffer, &slot, fmt) {
                    return gst::PadProbeReturn::Drop;
                }
            }
            gst::PadProbeReturn::Ok
        });
        Ok(bin.upcast())
    }
}

/// Hands one buffer to the instance as a writable frame; `false`: drop it.
fn process(pad: &gst::Pad, buffer: &mut gst::Buffer, slot: &Slot, format: PixelFormat) -> bool {
    let Some(info) = pad
        .current_caps()
        .and_then(|c| gst_video::VideoInfo::from_caps(&c).ok())
    else {
        return true;
    };
    let pts_ns = buffer.pts().map(|t| t.nseconds());
    let buf = buffer.make_mut();
    let Ok(mut map) = buf.map_writable() else {
        return true;
    };
    let (width, height) = (info.width(), info.height());
    let planes: Vec<(usize, usize, usize)> = (0..info.n_planes() as usize)
        .map(|i| {
            let rows = match (format, i) {
                (PixelFormat::I420, 1 | 2) => height.div_ceil(2),
                _ => height,
            } as usize;
            (info.offset()[i], info.stride()[i].max(0) as usize, rows)
        })
        .collect();
    let Some(split) = split_planes(map.as_mut_slice(), &planes) else {
        return true;
    };
    let mut frame = VideoFrame {
        format,
        width,
        height,
        pts_ns,
        planes: split,
    };
    slot.process(&mut frame)
}

/// The planes at (offset, stride, rows) of `data`, in order of offset; `None` when one
/// overlaps the next or reaches past the end.
fn split_planes<'a>(
    mut data: &'a mut [u8],
    planes: &[(usize, usize, usize)],
) -> Option<Vec<Plane<'a>>> {
    let mut out = Vec::with_capacity(planes.len());
    let mut at = 0usize;
    for &(offset, stride, rows) in planes {
        let skip = offset.checked_sub(at)?;
        let len = stride.checked_mul(rows)?;
        if skip + len > data.len() {
            return None;
        }
        let rest = std::mem::take(&mut data);
        let (plane, tail) = rest[skip..].split_at_mut(len);
        out.push(Plane {
            data: plane,
            stride,
        });
        data = tail;
        at = offset + len;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn planes_split_at_their_offsets() {
        let mut data: Vec<u8> = (0..40).collect();
        let planes =
            super::split_planes(&mut data, &[(0, 4, 4), (16, 2, 2), (24, 2, 2)]).expect("fits");
        assert_eq!(planes.len(), 3);
        assert_eq!(planes[1].data[0], 16);
        assert_eq!(planes[2].data.len(), 4);
        assert_eq!(planes[2].data[0], 24);
        let mut small = vec![0u8; 10];
        assert!(super::split_planes(&mut small, &[(0, 4, 4)]).is_none());
    }
}
