//! What GStreamerFilter commands may do with numbers and caps: bounds on the properties of
//! the default list's factories whose in-range values crash, hang, blow up memory or dump
//! per buffer (found by `make gst-filter-sweep`, table in docs/gst-filter-sweep.md), and
//! bounds on the media a command may produce (raw video size and rate, audio rate and
//! channels), checked on caps in the command's text and, at run time, on every caps event
//! leaving an element of the command's bin.

use gstreamer as gst;
use gstreamer::prelude::*;

/// The values a (factory, property) may take in a command or setElementProperty.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    /// The factory.
    pub factory: &'static str,
    /// Its property.
    pub property: &'static str,
    /// Inclusive range (booleans: 0 false, 1 true).
    pub min: f64,
    /// See `min`.
    pub max: f64,
    /// Only odd values (kernel sizes, apertures).
    pub odd: bool,
    /// Why, for the error text.
    pub why: &'static str,
}

const fn b(
    factory: &'static str,
    property: &'static str,
    min: f64,
    max: f64,
    why: &'static str,
) -> Bound {
    Bound {
        factory,
        property,
        min,
        max,
        odd: false,
        why,
    }
}

impl Bound {
    /// The same bound, odd values only.
    const fn odd_only(self) -> Bound {
        Bound { odd: true, ..self }
    }
}

const DUMPS: &str = "it writes every buffer to the server's standard output";
const SLEEPS: &str = "a longer sleep holds the streaming thread past the filter's release";
const ABORTS: &str = "OpenCV aborts the server on other values";
const ALLOCATES: &str = "larger values allocate gigabytes or abort the server";
const STALLS: &str = "larger values stall the stream for seconds a frame";

/// The bounded properties (see the module).
pub const BOUNDS: &[Bound] = &[
    b("identity", "dump", 0.0, 0.0, DUMPS),
    b("identity", "sleep-time", 0.0, 100_000.0, SLEEPS),
    b(
        "videorate",
        "rate",
        0.1,
        10.0,
        "other rates never finish a frame",
    ),
    b("smooth", "filter-size", 1.0, 15.0, STALLS),
    b("edgedetect", "aperture", 3.0, 7.0, ABORTS).odd_only(),
    b(
        "cvsmooth",
        "type",
        2.0,
        2.0,
        "gaussian only: blur crashes OpenCV's box filter within seconds on live video, median and bilateral fail on the stream and can hang its stop",
    ),
    b("cvsmooth", "kernel-width", 1.0, 63.0, ALLOCATES),
    b("cvsmooth", "kernel-height", 1.0, 63.0, ALLOCATES),
    b("cvdilate", "iterations", 1.0, 64.0, ALLOCATES),
    b("cverode", "iterations", 1.0, 64.0, ALLOCATES),
    b("retinex", "sigma", 0.0, 100.0, ABORTS),
    b("spectrum", "bands", 2.0, 16_384.0, ALLOCATES),
];

/// The bound on `factory`'s `property`, if it has one.
pub fn bound(factory: &str, property: &str) -> Option<&'static Bound> {
    BOUNDS
        .iter()
        .find(|b| b.factory == factory && b.property == property)
}

/// `v` as a number, if it is one (booleans as 0 and 1).
fn number(v: &glib::Value) -> Option<f64> {
    macro_rules! try_as {
        ($($t:ty),*) => {
            $(if let Ok(x) = v.get::<$t>() {
                return Some(x as f64);
            })*
        };
    }
    if let Some((_, e)) = glib::EnumValue::from_value(v) {
        return Some(f64::from(e.value()));
    }
    if let Ok(x) = v.get::<bool>() {
        return Some(if x { 1.0 } else { 0.0 });
    }
    try_as!(i32, u32, i64, u64, f32, f64, i8, u8);
    if let Ok(x) = v.get::<glib::ILong>() {
        return Some(x.0 as f64);
    }
    if let Ok(x) = v.get::<glib::ULong>() {
        return Some(x.0 as f64);
    }
    None
}

fn show(x: f64, boolean: bool) -> String {
    if boolean {
        (x != 0.0).to_string()
    } else {
        format!("{x}")
    }
}

/// Why `value` may not be given to `factory`'s `property`, if it is outside its bound.
pub(crate) fn value_refusal(factory: &str, property: &str, value: &glib::Value) -> Option<String> {
    let bound = bound(factory, property)?;
    let boolean = value.type_() == glib::Type::BOOL;
    let x = number(value)?;
    let in_range = x >= bound.min && x <= bound.max && (!bound.odd || x.rem_euclid(2.0) == 1.0);
    if in_range {
        return None;
    }
    if let Some((class, e)) = glib::EnumValue::from_value(value) {
        let nicks: Vec<&str> = class
            .values()
            .iter()
            .filter(|v| (bound.min..=bound.max).contains(&f64::from(v.value())))
            .map(|v| v.nick())
            .collect();
        return Some(format!(
            "{} is not a value GStreamerFilter allows for the property '{property}' of {factory}: {} ({}; the operator can lift this with --gst-filter-allow {factory}.{property})",
            e.nick(),
            nicks.join(", "),
            bound.why
        ));
    }
    let allowed = if bound.min == bound.max {
        show(bound.min, boolean)
    } else {
        format!(
            "{}{} to {}",
            if bound.odd { "odd values from " } else { "" },
            show(bound.min, boolean),
            show(bound.max, boolean)
        )
    };
    Some(format!(
        "{} is out of the range GStreamerFilter allows for the property '{property}' of {factory}: {allowed} ({}; the operator can lift this with --gst-filter-allow {factory}.{property})",
        show(x, boolean),
        bound.why
    ))
}

/// The widest and tallest raw video a command may produce.
pub const MAX_SIDE: i32 = 4096;
/// The most pixels in a frame (DCI 4K, 4096x2160).
pub const MAX_PIXELS: i64 = 4096 * 2160;
/// The highest frame rate.
pub const MAX_FPS: i32 = 120;
/// The highest audio sample rate.
pub const MAX_RATE: i32 = 192_000;
/// The most audio channels.
pub const MAX_CHANNELS: i32 = 8;

/// The least integer a caps field admits (a number, a range or a list).
fn least_int(v: &glib::SendValue) -> Option<i32> {
    if let Ok(x) = v.get::<i32>() {
        return Some(x);
    }
    if let Ok(r) = v.get::<gst::IntRange<i32>>() {
        return Some(r.min());
    }
    if let Ok(l) = v.get::<gst::List>() {
        return l.iter().filter_map(least_int).min();
    }
    None
}

/// The least frame rate a caps field admits, in frames per second.
fn least_fps(v: &glib::SendValue) -> Option<f64> {
    let f = |x: gst::Fraction| f64::from(x.numer()) / f64::from(x.denom().max(1));
    if let Ok(x) = v.get::<gst::Fraction>() {
        return Some(f(x));
    }
    if let Ok(r) = v.get::<gst::FractionRange>() {
        return Some(f(r.min()));
    }
    if let Ok(l) = v.get::<gst::List>() {
        return l.iter().filter_map(least_fps).min_by(|a, b| a.total_cmp(b));
    }
    None
}

/// Why media of these caps may not come out of an element of a command, if it may not:
/// raw video over [`MAX_SIDE`] on a side or [`MAX_PIXELS`], over [`MAX_FPS`] frames a
/// second, audio over [`MAX_RATE`] Hz or [`MAX_CHANNELS`] channels. A field that admits
/// several values is judged by the least of them.
pub fn caps_refusal(caps: &gst::CapsRef) -> Option<String> {
    for s in caps.iter() {
        let field = |n: &str| s.value(n).ok().and_then(least_int);
        let over = |what: &str, v: String, max: String| {
            Some(format!(
                "{what} {v} in {} is over GStreamerFilter's bound ({max})",
                s.name()
            ))
        };
        if s.name().starts_with("video/") || s.name().starts_with("image/") {
            let (w, h) = (field("width"), field("height"));
            for (what, v) in [("width", w), ("height", h)] {
                if let Some(v) = v.filter(|v| *v > MAX_SIDE) {
                    return over(what, v.to_string(), MAX_SIDE.to_string());
                }
            }
            if let (Some(w), Some(h)) = (w, h) {
                if i64::from(w) * i64::from(h) > MAX_PIXELS {
                    return over(
                        "the frame size",
                        format!("{w}x{h}"),
                        format!("{MAX_PIXELS} pixels, 4096x2160"),
                    );
                }
            }
            if let Some(fps) = s.value("framerate").ok().and_then(least_fps) {
                if fps > f64::from(MAX_FPS) {
                    return over("the frame rate", format!("{fps}"), format!("{MAX_FPS}/1"));
                }
            }
        } else if s.name().starts_with("audio/") {
            if let Some(r) = field("rate").filter(|r| *r > MAX_RATE) {
                return over("the rate", r.to_string(), MAX_RATE.to_string());
            }
            if let Some(c) = field("channels").filter(|c| *c > MAX_CHANNELS) {
                return over("the channel count", c.to_string(), MAX_CHANNELS.to_string());
            }
        }
    }
    None
}

/// Refuses, on `pad`, caps events over the bounds: the element's negotiation fails (not
/// negotiated) and an error naming the bound reaches the bus, before any frame of that
/// size is allocated downstream.
fn guard_pad(pad: &gst::Pad) {
    pad.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, |pad, info| {
        let Some(gst::PadProbeData::Event(ev)) = &info.data else {
            return gst::PadProbeReturn::Ok;
        };
        let gst::EventView::Caps(c) = ev.view() else {
            return gst::PadProbeReturn::Ok;
        };
        let Some(why) = caps_refusal(c.caps()) else {
            return gst::PadProbeReturn::Ok;
        };
        let element = pad
            .parent_element()
            .map(|e| e.name().to_string())
            .unwrap_or_default();
        tracing::warn!(%element, "GStreamerFilter: {why}");
        if let Some(e) = pad.parent_element() {
            // Without GStreamer's debug text (a source file and function of Fluo's).
            let text = format!("GStreamerFilter: {element} would output {why}");
            let msg = gst::message::Error::builder(gst::CoreError::Negotiation, &text)
                .src(&e)
                .build();
            let _ = e.post_message(msg);
        }
        info.data = None;
        info.flow_res = Err(gst::FlowError::NotNegotiated);
        gst::PadProbeReturn::Handled
    });
}

fn guard_element(e: &gst::Element) {
    for p in e.src_pads() {
        guard_pad(&p);
    }
    e.connect_pad_added(|_, p| {
        if p.direction() == gst::PadDirection::Src {
            guard_pad(p);
        }
    });
}

/// Puts the caps guard on every source pad of `bin` and of the elements in it, now and
/// later (elements and pads added while it runs).
pub(crate) fn guard(bin: &gst::Bin) {
    for e in bin.iterate_recurse().into_iter().flatten() {
        guard_element(&e);
    }
    for p in bin.src_pads() {
        guard_pad(&p);
    }
    bin.connect_deep_element_added(|_, _, e| guard_element(e));
}
