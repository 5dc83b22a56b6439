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

/// Bytes the recorders' file sinks were handed, counted by a probe on each one's pad.
static RECORDED: AtomicU64 = AtomicU64::new(0);

/// Bytes the recorders of this process have written to their files so far (what reached the
/// file sink named `out` of each "recorder" pipeline, see `recorder/`: headers a muxer
/// rewrites count again). An upload (`curlhttpsink`) counts nothing. An atomic read: no
/// file system access, no lock.
pub fn recorded_bytes() -> u64 {
    RECORDED.load(Ordering::Relaxed)
}

/// Counts what reaches the sink pad of a recorder's file sink.
fn count_recorded(p: &gst::Pipeline) {
    let Some(pad) = p
        .by_name("out")
        .filter(|out| out.has_property("location"))
        .and_then(|out| out.static_pad("sink"))
    else {
        return;
    };
    pad.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
        |_, info| {
            let n = match &info.data {
                Some(gst::PadProbeData::Buffer(b)) => b.size(),
                Some(gst::PadProbeData::BufferList(l)) => l.calculate_size(),
                _ => 0,
            };
            RECORDED.fetch_add(n as u64, Ordering::Relaxed);
            gst::PadProbeReturn::Ok
        },
    );
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
        count_recorded(p);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorders_bytes_are_counted_as_they_reach_its_file_sink_without_reading_the_file() {
        gst::init().unwrap();
        let before = recorded_bytes();
        // /dev/null's size is always 0: only counting what the sink is handed sees the bytes.
        let desc = "fakesrc num-buffers=10 sizetype=fixed sizemax=1000 filltype=zero \
                    ! filesink name=out location=/dev/null";
        let p = crate::bridge::launch(desc, "rec", "recorder").unwrap();
        p.set_state(gst::State::Playing).unwrap();
        let bus = p.bus().unwrap();
        let msg = bus.timed_pop_filtered(
            gst::ClockTime::from_seconds(10),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        );
        assert!(matches!(
            msg.map(|m| m.type_()),
            Some(gst::MessageType::Eos)
        ));
        p.set_state(gst::State::Null).unwrap();
        drop(p);
        // Other tests may record at the same time: at least these 10 kB.
        assert!(
            recorded_bytes() - before >= 10_000,
            "{}",
            recorded_bytes() - before
        );
    }
}
