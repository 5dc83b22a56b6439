//! Negotiation: what the router does with one source's media of one kind for one sink.
//!
//! A pure function of four things:
//!
//! * the codec the source sends (its current payload type's codec);
//! * what the sink takes ([`SinkCaps`]): the codecs it takes unchanged in its order of
//!   preference (with the payload type it numbers each with, for a WebRTC peer), or anything;
//!   and the codecs it would rather be transcoded to, best first;
//! * what the source's output settings force ([`Forced`], from `setAudioFormat` /
//!   `setVideoFormat`);
//! * what the transcoder factory can make (`can(from, to)`).
//!
//! The answer ([`Decision`]) is one of: forward as it is (with the sink's payload type), feed
//! the sink through a transcoder to a codec, or impossible (and why). The router asks when a
//! route appears, when a source's codec or a sink's negotiated codecs change, or when
//! forced formats change: never per packet.
//!
//! The rules, in order:
//!
//! 1. A sink that is a transcoder is never transcoded for (that chains transcoders and can
//!    loop): it gets the source's media if it takes its codec, else the source changed codec
//!    under it ([`Impossible::TranscoderInput`]) and its sinks must be matched again.
//! 2. A format forced on the source that its media is not in (another codec, or a frame rate
//!    or an Opus bitrate the source did not apply while encoding) sends it through a
//!    transcoder to the forced codec, for a sink that takes that codec; a sink that does not
//!    take it gets the first codec it takes re-encoded when a rate or bitrate is forced, and is
//!    otherwise matched as if nothing were forced (as KMS feeds sinks that cannot take the
//!    forced codec).
//! 3. A sink that takes the source's codec gets it as it is: with the payload type of the
//!    entry of the same H.264 profile and packetization mode if there is one, else of the first
//!    compatible entry.
//! 4. Else through a transcoder to the first codec of the sink's targets, of the same kind,
//!    that the factory can make from the source's.
//! 5. Else impossible ([`Impossible::NoCodec`]): the sink raises a CODEC_MISMATCH error.

use crate::port::{Codec, CodecName};
use crate::settings::OutputSettings;
use crate::MediaKind;

/// A codec a sink takes unchanged, with the payload type it numbers it with, when it has one
/// (a WebRTC peer's answer; Fluo's own ports number codecs themselves).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkCodec {
    /// The codec; an H.264 entry without profile or packetization mode takes any.
    pub codec: Codec,
    /// The sink's payload type for it.
    pub pt: Option<u8>,
}

impl SinkCodec {
    /// An entry without a payload type.
    pub fn new(codec: Codec) -> SinkCodec {
        SinkCodec { codec, pt: None }
    }

    /// An entry with the sink's payload type `pt`.
    pub fn with_pt(codec: Codec, pt: u8) -> SinkCodec {
        SinkCodec {
            codec,
            pt: Some(pt),
        }
    }
}

/// What a sink takes of one media kind unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Takes {
    /// Whatever comes: a recorder whose profile has no track of this kind, an RtpEndpoint
    /// that does not send this kind, a filter's kind it does not filter.
    Anything,
    /// These codecs, best first.
    Codecs(Vec<SinkCodec>),
}

/// What a sink takes of one media kind, as negotiation sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkCaps {
    /// What it takes unchanged.
    pub takes: Takes,
    /// The codecs to transcode to when it cannot take the source's, best first.
    pub targets: Vec<Codec>,
    /// The sink is a transcoder the router made (rule 1).
    pub transcoder: bool,
}

impl SinkCaps {
    /// A sink that takes `codecs` (best first) and is transcoded to them, in that order.
    pub fn codecs(codecs: impl IntoIterator<Item = SinkCodec>) -> SinkCaps {
        let takes: Vec<SinkCodec> = codecs.into_iter().collect();
        let targets = takes.iter().map(|c| c.codec).collect();
        SinkCaps {
            takes: Takes::Codecs(takes),
            targets,
            transcoder: false,
        }
    }

    /// A sink that takes anything.
    pub fn anything() -> SinkCaps {
        SinkCaps {
            takes: Takes::Anything,
            targets: vec![],
            transcoder: false,
        }
    }

    /// A transcoder's input: its one codec.
    pub fn transcoder(input: Codec) -> SinkCaps {
        SinkCaps {
            transcoder: true,
            ..SinkCaps::codecs([SinkCodec::new(input)])
        }
    }

    /// Whether `codec` is taken as it is, and with which entry's payload type (rule 3).
    pub fn take(&self, codec: &Codec) -> Option<Option<u8>> {
        let list = match &self.takes {
            Takes::Anything => return Some(None),
            Takes::Codecs(list) => list,
        };
        let mut compatible = list.iter().filter(|c| c.codec.compatible(codec));
        let first = compatible.clone().next()?;
        let exact = compatible.find(|c| {
            c.codec.profile_level_id == codec.profile_level_id
                && c.codec.packetization_mode == codec.packetization_mode
        });
        Some(exact.unwrap_or(first).pt)
    }
}

/// A format forced on a source's media of one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forced {
    /// The codec its media must be in.
    pub codec: CodecName,
    /// A frame rate or an audio bitrate is forced too that the source did not apply itself:
    /// its media is re-encoded even when already in the codec.
    pub reencode: bool,
}

impl Forced {
    /// What `settings` force on the source's media of `kind`; `applied`: the source encodes
    /// its own output and applied the frame rate or bitrate while doing so.
    pub fn of(settings: &OutputSettings, kind: MediaKind, applied: bool) -> Option<Forced> {
        let (codec, rate) = match kind {
            MediaKind::Audio => settings.audio.map(|a| (a.codec, a.bitrate != 0))?,
            MediaKind::Video => settings.video.map(|v| (v.codec, v.framerate.is_some()))?,
        };
        Some(Forced {
            codec,
            reencode: rate && !applied,
        })
    }

    /// Whether media in `codec` must be re-encoded to meet this format.
    pub fn unmet_by(&self, codec: &Codec) -> bool {
        codec.name != self.codec || self.reencode
    }
}

/// Why a sink cannot have a source's media.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Impossible {
    /// The sink is a transcoder of another codec of this source: the source changed codec
    /// under it. The transcoder must go and its sinks be matched again.
    TranscoderInput,
    /// The sink takes none of the codecs the source's could be made into.
    NoCodec,
}

/// What the router does with one source's media of one kind for one sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// As it is, with the sink's payload type for it (if it numbers codecs).
    Forward {
        /// The sink's payload type.
        pt: Option<u8>,
    },
    /// Through a transcoder (shared per source, kind and target) to this codec.
    Transcode {
        /// The codec the transcoder makes, as the sink described it.
        to: Codec,
    },
    /// Not at all.
    Impossible(Impossible),
}

/// Decides what `sink` gets of `source`'s media in `codec` (see the [module docs](self)).
/// `can(from, to)`: whether the transcoder factory can make `to` from `from` (`|_, _| false`
/// without one).
pub fn decide(
    codec: &Codec,
    sink: &SinkCaps,
    forced: Option<Forced>,
    can: impl Fn(&Codec, &Codec) -> bool,
) -> Decision {
    if sink.transcoder {
        return match sink.take(codec) {
            Some(pt) => Decision::Forward { pt },
            None => Decision::Impossible(Impossible::TranscoderInput),
        };
    }
    let kind = codec.name.kind();
    let usable = |t: &&Codec| t.name.kind() == kind && can(codec, t);
    if let Some(f) = forced.filter(|f| f.unmet_by(codec)) {
        let forced_target = sink
            .targets
            .iter()
            .filter(usable)
            .find(|t| t.name == f.codec);
        if let Some(t) = forced_target {
            return Decision::Transcode { to: *t };
        }
        if f.reencode {
            if let Some(t) = sink.targets.iter().find(usable) {
                return Decision::Transcode { to: *t };
            }
        }
    }
    if let Some(pt) = sink.take(codec) {
        return Decision::Forward { pt };
    }
    match sink.targets.iter().find(usable) {
        Some(t) => Decision::Transcode { to: *t },
        None => Decision::Impossible(Impossible::NoCodec),
    }
}

#[cfg(test)]
mod tests;
