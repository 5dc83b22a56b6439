//! Counts of the GStreamer pipelines and elements Fluo created that are still alive, for soaks
//! and leak checks: every pipeline is tracked from its creation, and every element that is or
//! later gets added anywhere inside it (decodebin's children included), until GLib finalises
//! it. A pipeline or element that outlives its Fluo object shows up here.

use gstreamer as gst;
use gstreamer::prelude::*;
use std::sync::atomic::{AtomicUsize, Ordering};

static PIPELINES: AtomicUsize = AtomicUsize::new(0);
static ELEMENTS: AtomicUsize = AtomicUsize::new(0);

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

/// Starts counting `p` and its elements; call once, right after creating it.
pub(crate) fn track(p: &gst::Pipeline) {
    PIPELINES.fetch_add(1, Ordering::Relaxed);
    let _ = p.add_weak_ref_notify(|| {
        PIPELINES.fetch_sub(1, Ordering::Relaxed);
    });
    p.connect_deep_element_added(|_, _, e| count_element(e));
    for e in p.iterate_recurse().into_iter().flatten() {
        count_element(&e);
    }
}
