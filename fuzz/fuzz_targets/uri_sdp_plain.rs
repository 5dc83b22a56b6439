//! Element URIs (PlayerEndpoint, RecorderEndpoint, the URI allow-list) and the remote SDP of
//! an RtpEndpoint (plain RTP, SDES crypto), through fluo-gst's own parsers. The input is one
//! text, given to both.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    fluo_gst::fuzzing::uri(&s);
    let _ = fluo_gst::fuzzing::plain_sdp(&s);
});
