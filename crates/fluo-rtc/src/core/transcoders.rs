//! The transcoder factory (fluo-gst's) as the router's [`TranscoderMaker`]: a transcoder's
//! output enters the media core with a key that names its node.

use fluo_sfu::{
    Codec, MediaKind, MediaPacket, Node, NodeId, PortOutput, TranscoderFactory, TranscoderMaker,
};
use std::sync::Arc;

/// The bit that marks a key as a transcoder's (elements' keys count up from 1).
const TRANSCODER: u64 = 1 << 63;

/// The key a transcoder's output comes back with: its node id. A node id of a generation
/// past 2^31 loses its top bit and names no node: that transcoder's packets are dropped.
fn transcoder_key(id: NodeId) -> u64 {
    TRANSCODER | (id.to_bits() & !TRANSCODER)
}

/// The node of a transcoder's key, if it is one.
pub(super) fn transcoder_node(key: u64) -> Option<NodeId> {
    (key & TRANSCODER != 0).then(|| NodeId::from_bits(key & !TRANSCODER))
}

/// Makes the router's transcoders with `factory`; they deliver through `output`.
pub(super) struct Maker {
    factory: Arc<dyn TranscoderFactory>,
    output: Arc<dyn Fn(u64, MediaPacket) + Send + Sync>,
}

impl Maker {
    pub(super) fn new(
        factory: Arc<dyn TranscoderFactory>,
        output: Arc<dyn Fn(u64, MediaPacket) + Send + Sync>,
    ) -> Maker {
        Maker { factory, output }
    }
}

impl TranscoderMaker for Maker {
    fn can(&self, from: &Codec, to: &Codec) -> bool {
        self.factory.can(from, to)
    }

    fn make(
        &self,
        id: NodeId,
        kind: MediaKind,
        from: &Codec,
        to: &Codec,
        source: &str,
    ) -> Result<Box<dyn Node>, String> {
        let out = PortOutput::new(transcoder_key(id), self.output.clone());
        match self.factory.create(kind, from, to, source, out) {
            Ok(node) => {
                tracing::info!(%source, %from, %to, "transcoder inserted");
                Ok(node)
            }
            Err(e) => {
                tracing::warn!(%source, %from, %to, "no transcoder: {e}");
                Err(fluo_api::text::foreign(&e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transcoder_key_names_its_node_and_no_element_key_does() {
        for bits in [0u64, 5, (7 << 32) | 3, (0x7fff_ffff << 32) | 0xffff_ffff] {
            let id = NodeId::from_bits(bits);
            assert_eq!(transcoder_node(transcoder_key(id)), Some(id));
        }
        assert_eq!(transcoder_node(1), None);
        assert_eq!(transcoder_node(u64::from(u32::MAX)), None);
    }
}
