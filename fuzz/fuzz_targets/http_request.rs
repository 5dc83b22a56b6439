//! The HTTP listener's reading of a connection (HttpPostEndpoint's uploads, WHIP/WHEP): the
//! request head (httparse, in fluo_core::http::request), the token and framing checks, and
//! the body's decoding (Content-Length or chunked, trailers), the body arriving in pieces
//! whose size is the input's first byte.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fluo_core::fuzzing::http_request(data);
});
