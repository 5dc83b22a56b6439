//! Dependency descriptors (the AV1 RTP specification's appendix A) as one stream sends them.
//!
//! The input is a list of records `[len: u8] [len bytes]` (the last record takes what is
//! left), each one packet's descriptor. Each goes through `dependency_descriptor::parse`
//! alone (no structure known), then through one stream's `svc::DdLayers` (which keeps the
//! last structure and picture; three packets to a picture) and the SVC filters of three
//! sinks whose targets are spatial layers 0, 1 and 2. Nothing may panic.
#![no_main]

use fluo_sfu::dependency_descriptor::parse;
use fluo_sfu::svc::{DdLayers, SvcFilter, ALL_TEMPORAL};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut stream = DdLayers::default();
    let mut sinks = [SvcFilter::default(); 3];
    let mut seq = 0u16;
    let mut i = 0;
    while i < data.len() {
        let n = usize::from(data[i]);
        let end = (i + 1 + n).min(data.len());
        let dd = &data[i + 1..end];
        i = end;
        let _ = parse(dd, None);
        let ts = u32::from(seq / 3) * 3000;
        if let Some((l, _)) = stream.read(dd, (1, seq), ts) {
            for (target, f) in sinks.iter_mut().enumerate() {
                let _ = f.admit(&l, l.ends, (target as u8, ALL_TEMPORAL));
            }
        }
        seq = seq.wrapping_add(1);
    }
});
