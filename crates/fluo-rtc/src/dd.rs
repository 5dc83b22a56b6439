//! The dependency descriptor header extension (`fluo_sfu::dependency_descriptor`) in str0m:
//! negotiated with every peer that offers it (str0m answers an extension its session has when
//! the offer names it), its bytes handed to the router as received, and forwarded to viewers
//! as the publisher sent them.
//!
//! Publishers: Chromium sends it with an AV1 track that has a scalability mode, and the
//! router reads the stream's layers from it (`fluo_sfu::svc::DdLayers`).
//!
//! Viewers of an AV1 stream get the publisher's descriptor on each packet they get (the egress
//! fast path copies it like the other publisher extensions, in the two-byte form; str0m's path
//! writes it with this serializer); another codec's (Chromium sends it with VP8 too once
//! negotiated) is the router's only. Chromium needs it to decode an AV1 stream of several spatial layers: in
//! e2e `87-svc` without it, the viewer that got every layer never decoded the top size and
//! asked for key pictures all along (the viewer capped to S0 decoded). A capped viewer gets the
//! descriptors of the frames it gets, whose references are frames it got; the frame numbers of
//! the frames it skips are missing, which a receiver tells from lost frames only by the
//! references (LiveKit rewrites the active decode targets per subscriber, mediasoup forwards
//! no descriptor: neither is done here).

use str0m::rtp::{Extension, ExtensionSerializer, ExtensionValues};

/// The id Fluo's own offers give the extension (Chromium's; a peer's offer renumbers it).
pub(crate) const ID: u8 = 12;

/// A packet's dependency descriptor, as received (in `ExtensionValues::user_values`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DdBytes(pub(crate) Vec<u8>);

#[derive(Debug)]
struct Serializer;

impl ExtensionSerializer for Serializer {
    fn write_to(&self, buf: &mut [u8], ev: &ExtensionValues) -> usize {
        match ev.user_values.get::<DdBytes>() {
            Some(d) if d.0.len() <= buf.len() && d.0.len() <= 255 => {
                buf[..d.0.len()].copy_from_slice(&d.0);
                d.0.len()
            }
            // None: 0 leaves it out of the packet.
            _ => 0,
        }
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

    fn requires_two_byte_form(&self, ev: &ExtensionValues) -> bool {
        ev.user_values
            .get::<DdBytes>()
            .is_some_and(|d| d.0.len() > 16)
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
