//! The HTTP listener's reading of a connection (HttpPostEndpoint's uploads): the request head
//! (httparse), the token and framing checks, and the body's decoding (Content-Length or
//! chunked, trailers), the body arriving in pieces whose size is the input's first byte.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fluo_server::fuzzing::http_request(data);
});
