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
            PixelFormat::Bgra => "BGRA",
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

/// Hands one buffer to the instance as a writable frame; `false`: drop it. A frame the
/// module cannot be given is dropped, not passed unprocessed (a module that masks or blurs
/// must not leak frames).
fn process(pad: &gst::Pad, buffer: &mut gst::Buffer, slot: &Slot, format: PixelFormat) -> bool {
    let Some(info) = pad
        .current_caps()
        .and_then(|c| gst_video::VideoInfo::from_caps(&c).ok())
    else {
        return false;
    };
    let pts_ns = buffer.pts().map(|t| t.nseconds());
    let buf = buffer.make_mut();
    let Ok(mut map) = buf.map_writable() else {
        return false;
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
        return false;
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
    use super::super::host::{Slot, Who};
    use super::*;
    use fluo_module::{Host, Instance, KurentoError, Map, Module, Value};
    use gstreamer_app as gst_app;
    use std::sync::Mutex;

    /// Frames seen: width, height, plane lengths and strides, pts.
    type Seen = Arc<Mutex<Vec<(u32, u32, Vec<(usize, usize)>, Option<u64>)>>>;

    struct Probe {
        seen: Seen,
        panic: bool,
    }

    impl Module for Probe {
        fn idl(&self) -> &str {
            "module probe 1.0.0"
        }
        fn create(
            &self,
            _: &mut dyn Host,
            _: &str,
            _: &Map<String, Value>,
        ) -> Result<Box<dyn Instance>, KurentoError> {
            Ok(Box::new(ProbeFilter {
                seen: self.seen.clone(),
                panic: self.panic,
            }))
        }
    }

    struct ProbeFilter {
        seen: Seen,
        panic: bool,
    }

    impl Instance for ProbeFilter {
        fn format(&self) -> PixelFormat {
            PixelFormat::I420
        }
        fn invoke(
            &mut self,
            _: &mut dyn Host,
            m: &str,
            _: &Map<String, Value>,
        ) -> Result<Value, KurentoError> {
            Err(fluo_module::not_handled(m))
        }
        fn process(&mut self, _: &mut dyn Host, frame: &mut VideoFrame<'_>) {
            assert!(!self.panic, "the probe panics");
            let planes = frame
                .planes
                .iter()
                .map(|p| (p.data.len(), p.stride))
                .collect();
            let mut seen = self.seen.lock().unwrap();
            seen.push((frame.width, frame.height, planes, frame.pts_ns));
            frame.planes[0].data.fill(200);
        }
    }

    /// Runs 3 frames of 64x48 I420 through a stage of `module`; the output's Y bytes and
    /// the events raised.
    fn run(module: &dyn Module) -> (Vec<u8>, Vec<fluo_core::MediaEvent>) {
        crate::init().expect("GStreamer");
        let events: Arc<Mutex<Vec<fluo_core::MediaEvent>>> = Arc::default();
        let sink_events = events.clone();
        let who = Who {
            id: "probe".into(),
            class: "Probe",
            events: vec![],
            sink: Arc::new(move |_: &str, ev| sink_events.lock().unwrap().push(ev)),
            uris: Arc::new(crate::UriPolicy::new(Vec::<String>::new())),
        };
        let slot = Slot::create(module, who, &Map::new()).expect("made");
        let stage = ModuleStage {
            format: slot.format(),
            slot,
        };
        let pipeline = gst::parse::launch(
            "videotestsrc num-buffers=3 ! video/x-raw,format=I420,width=64,height=48 ! \
             identity name=pre identity name=post ! video/x-raw,format=I420 ! appsink name=out sync=false",
        )
        .expect("pipeline")
        .downcast::<gst::Pipeline>()
        .expect("a pipeline");
        let el = stage.make().expect("the stage");
        pipeline.add(&el).expect("added");
        let by = |n: &str| pipeline.by_name(n).expect(n);
        by("pre").link(&el).expect("linked");
        el.link(&by("post")).expect("linked");
        let out = by("out").downcast::<gst_app::AppSink>().expect("appsink");
        pipeline.set_state(gst::State::Playing).expect("plays");
        let mut ys = vec![];
        while let Ok(sample) = out.pull_sample() {
            let buf = sample.buffer().expect("a buffer");
            ys.push(buf.map_readable().expect("readable")[0]);
        }
        pipeline.set_state(gst::State::Null).expect("stops");
        let evs = events.lock().unwrap().clone();
        (ys, evs)
    }

    #[test]
    fn an_i420_module_gets_its_planes_and_changes_the_output() {
        let seen: Seen = Arc::default();
        let (ys, events) = run(&Probe {
            seen: seen.clone(),
            panic: false,
        });
        assert_eq!(ys, [200, 200, 200], "the module's Y reaches the output");
        assert!(events.is_empty(), "{events:?}");
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 3);
        let (w, h, planes, pts) = &seen[1];
        assert_eq!((*w, *h), (64, 48));
        assert_eq!(planes, &[(64 * 48, 64), (32 * 24, 32), (32 * 24, 32)]);
        assert!(pts.is_some_and(|t| t > 0), "{pts:?}");
    }

    #[test]
    fn a_module_that_panics_drops_its_frames_and_raises_one_error() {
        let (ys, events) = run(&Probe {
            seen: Seen::default(),
            panic: true,
        });
        assert!(ys.is_empty(), "no frame after the panic: {ys:?}");
        assert_eq!(events.len(), 1, "{events:?}");
        let fluo_core::MediaEvent::Error { description, .. } = &events[0] else {
            panic!("{events:?}");
        };
        assert!(
            description.starts_with("Probe: the module panicked in process (the probe panics)"),
            "{description}"
        );
    }

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
