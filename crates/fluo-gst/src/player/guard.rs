//! What a player does not follow while the server has a URI allow-list, beyond the HTTP
//! source's redirects (turned off in `source-setup`) and fetching demuxers (refused in
//! `autoplug-continue`): an RTSP server's redirect.

use gstreamer as gst;
use gstreamer::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// rtspsrc follows an RTSP 301/302 on its own: it takes the new location as its own and
/// reconnects there. Before each request it sends, it asks `before-send`: a request for any
/// location but the checked one `checked` is not sent, and the player gets one Error naming
/// the target. (The TCP connection to the target is made before the first request is asked
/// about; no byte is sent on it.)
pub(super) fn refuse_rtsp_redirects(src: &gst::Element, checked: String) {
    let told = Arc::new(AtomicBool::new(false));
    src.connect("before-send", false, move |args| {
        let src = args.first()?.get::<gst::Element>().ok()?;
        let now = src.property::<Option<String>>("location").unwrap_or_default();
        if now == checked {
            return Some(true.to_value());
        }
        if !told.swap(true, Ordering::Relaxed) {
            let text = format!(
                "{checked} redirects to {now}: redirects are not followed while this server has a URI allow-list (ask for the target URI itself if the list allows it)"
            );
            tracing::warn!("player: {text}");
            let msg = gst::message::Error::builder(gst::ResourceError::NotAuthorized, &text)
                .src(&src)
                .build();
            let _ = src.post_message(msg);
        }
        Some(false.to_value())
    });
}
