//! The dependency descriptor header extension (`fluo_sfu::dependency_descriptor`) in str0m:
//! negotiated with every peer (str0m answers an extension its session has when the offer
//! names it), its bytes handed to the router as received, and never written.
//!
//! Publishers: Chromium sends it with an AV1 track that has a scalability mode, and the
//! router reads the stream's layers from it (`fluo_sfu::svc::DdLayers`).
//!
//! Viewers get none: as mediasoup does (its dependency descriptor is receive-only; its
//! "do not forward" change), a viewer's packets carry no descriptor, and Chromium decodes
//! an AV1 stream without one from the OBUs' own layer ids. Forwarding the publisher's would
//! be wrong for a viewer that skips layers (its frame numbers, chains and active decode
//! targets describe the whole stream: LiveKit rewrites them per subscriber), and the egress
//! fast path writes no extension of variable length.

use str0m::rtp::{Extension, ExtensionSerializer, ExtensionValues};

/// The id Fluo's own offers give the extension (Chromium's; the peer's offer renumbers it).
pub(crate) const ID: u8 = 12;

/// A packet's dependency descriptor, as received (in `ExtensionValues::user_values`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DdBytes(pub(crate) Vec<u8>);

#[derive(Debug)]
struct Serializer;

impl ExtensionSerializer for Serializer {
    fn write_to(&self, _buf: &mut [u8], _ev: &ExtensionValues) -> usize {
        // Never sent (see the module): 0 leaves it out of the packet.
        0
    }

    fn parse_value(&self, buf: &[u8], ev: &mut ExtensionValues) -> bool {
        ev.user_values.set(DdBytes(buf.to_vec()));
        true
    }

    fn is_video(&self) -> bool {
        true
    }

    fn is_audio(&self) -> bool {
        false
    }
}

/// The extension, for the session's extension map.
pub(crate) fn extension() -> Extension {
    Extension::with_serializer(fluo_sfu::dependency_descriptor::URI, Serializer)
}

/// The descriptor's bytes among a packet's parsed extensions.
pub(crate) fn bytes(ev: Option<&ExtensionValues>) -> Option<&[u8]> {
    ev?.user_values.get::<DdBytes>().map(|d| d.0.as_slice())
}
