//! Counts of the GStreamer pipelines and elements Fluo created that are still alive, for soaks
//! and leak checks: every pipeline is tracked from its creation, and every element that is or
//! later gets added anywhere inside it (decodebin's children included), until GLib finalises
//! it. A pipeline or element that outlives its Fluo object shows up here.
//!
//! Each pipeline is also noted with the element it runs for (its owner: the player,
//! recorder, filter or RtpEndpoint, or the source a transcoder encodes), for the DOT graphs.

use gstreamer as gst;
use gstreamer::prelude::*;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

static PIPELINES: AtomicUsize = AtomicUsize::new(0);
static ELEMENTS: AtomicUsize = AtomicUsize::new(0);

/// Live pipelines by owner element id.
static OWNED: Mutex<Vec<(String, glib::WeakRef<gst::Pipeline>)>> = Mutex::new(Vec::new());

/// The pipelines alive now that run for the elements `owners`, in creation order.
pub(crate) fn pipelines_of(owners: &[String]) -> Vec<gst::Pipeline> {
    let mut owned = OWNED.lock().unwrap_or_else(|p| p.into_inner());
    owned.retain(|(_, w)| w.upgrade().is_some());
    owned
        .iter()
        .filter(|(o, _)| owners.contains(o))
        .filter_map(|(_, w)| w.upgrade())
        .collect()
}

/// Recording pipelines ("recorder", see `recorder/`) with the bytes their file sink had
/// written at the last reading, and what finalised ones had written.
static RECORDERS: Mutex<Vec<(glib::WeakRef<gst::Pipeline>, u64)>> = Mutex::new(Vec::new());
static RECORDED: AtomicU64 = AtomicU64::new(0);

/// Bytes the recorders of this process have written to their files so far: the sizes of
/// the files of the live recordings, read now (one `stat` per recording: for a scrape or a
/// pong, not per buffer), plus what ended recordings had at their last reading (what one
/// wrote after it is not counted). An upload (`curlhttpsink`) counts nothing.
pub fn recorded_bytes() -> u64 {
    let mut recs = RECORDERS.lock().unwrap_or_else(|p| p.into_inner());
    let mut live = 0;
    recs.retain_mut(|(weak, last)| {
        let Some(p) = weak.upgrade() else {
            RECORDED.fetch_add(*last, Ordering::Relaxed);
            return false;
        };
        // The file's size: an element query for the position in bytes is answered upstream
        // (in time), not with what the sink wrote.
        let now = p
            .by_name("out")
            .filter(|out| out.has_property("location"))
            .and_then(|out| out.property::<Option<String>>("location"))
            .and_then(|path| std::fs::metadata(path).ok())
            .map_or(0, |m| m.len());
        *last = now.max(*last);
        live += *last;
        true
    });
    RECORDED.load(Ordering::Relaxed) + live
}

/// Pipelines created by Fluo and not yet finalised.
pub fn live_pipelines() -> usize {
    PIPELINES.load(Ordering::Relaxed)
}

/// Elements inside those pipelines (at any depth) not yet finalised.
pub fn live_elements() -> usize {
    ELEMENTS.load(Ordering::Relaxed)
}

fn count_element(e: &gst::Element) {
    ELEMENTS.fetch_add(1, Ordering::Relaxed);
    // The notification outlives the returned handle: it fires once, at finalisation.
    let _ = e.add_weak_ref_notify(|| {
        ELEMENTS.fetch_sub(1, Ordering::Relaxed);
    });
}

/// Starts counting `p` and its elements, and notes that it runs for element `owner`; call
/// once, right after creating it.
pub(crate) fn track(p: &gst::Pipeline, owner: &str) {
    {
        let mut owned = OWNED.lock().unwrap_or_else(|p| p.into_inner());
        owned.retain(|(_, w)| w.upgrade().is_some());
        owned.push((owner.to_string(), p.downgrade()));
    }
    if p.name() == "recorder" {
        let mut recs = RECORDERS.lock().unwrap_or_else(|p| p.into_inner());
        recs.push((p.downgrade(), 0));
    }
    PIPELINES.fetch_add(1, Ordering::Relaxed);
    let _ = p.add_weak_ref_notify(|| {
        PIPELINES.fetch_sub(1, Ordering::Relaxed);
    });
    p.connect_deep_element_added(|_, _, e| count_element(e));
    for e in p.iterate_recurse().into_iter().flatten() {
        count_element(&e);
    }
}
