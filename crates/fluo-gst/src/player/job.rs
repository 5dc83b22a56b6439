//! The player job: a PlayerEndpoint's pipeline (`crate::player::PlayerCore`) in a worker, its
//! RTP sent to the server through the job's context.

use crate::jobs::{emit, event_sink, get_codec, params, put_codec};
use crate::player::{self, PlayerCore};
use crate::uri;
use fluo_sfu::{AudioFormat, OutputSettings, PortOutput, VideoFormat};
use fluo_worker::wire::{self, Reader, Wire, WireError, Writer};
use fluo_worker::worker::{Job, JobCtx};
use fluo_worker::PacketRef;
use serde_json::Value;
use std::sync::Arc;

/// What a player job is made of (the server has checked the URI against its allow-list; the
/// worker's sandbox holds it to the list's paths).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlayerParams {
    /// The URI to play (`file://`, `http(s)://`, `rtsp(s)://`, or a path).
    pub uri: String,
    /// useEncodedMedia: VP8, VP9, H.264 and Opus payloaded without decoding.
    pub use_encoded: bool,
    /// networkCache, in milliseconds.
    pub network_cache: u32,
    /// Whether the server has a URI allow-list (no redirects, no fetching demuxers).
    pub guarded: bool,
}

impl Wire for PlayerParams {
    fn put(&self, w: &mut Writer<'_>) {
        w.str(&self.uri);
        w.bool(self.use_encoded);
        w.u32(self.network_cache);
        w.bool(self.guarded);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(PlayerParams {
            uri: r.str()?.to_owned(),
            use_encoded: r.bool()?,
            network_cache: r.u32()?,
            guarded: r.bool()?,
        })
    }
}

/// The `play` method's argument: the element's encoder bitrates, in bps, and the formats its
/// setVideoFormat / setAudioFormat force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlayParams {
    /// encoderBitrate.
    pub target_bps: u32,
    /// minEncoderBitrate.
    pub min_bps: u32,
    /// maxEncoderBitrate (0: none).
    pub max_bps: u32,
    /// The forced video format.
    pub video: Option<VideoFormat>,
    /// The forced audio format.
    pub audio: Option<AudioFormat>,
}

impl PlayParams {
    /// The arguments for an element's output settings.
    pub fn of(s: &OutputSettings) -> PlayParams {
        PlayParams {
            target_bps: s.target_bps,
            min_bps: s.min_bps,
            max_bps: s.max_bps,
            video: s.video,
            audio: s.audio,
        }
    }

    /// The output settings these arguments stand for.
    pub fn settings(&self) -> OutputSettings {
        let mut s = OutputSettings::new(self.target_bps);
        (s.min_bps, s.max_bps) = (self.min_bps, self.max_bps);
        (s.video, s.audio) = (self.video, self.audio);
        s
    }
}

impl Wire for PlayParams {
    fn put(&self, w: &mut Writer<'_>) {
        w.u32(self.target_bps);
        w.u32(self.min_bps);
        w.u32(self.max_bps);
        w.bool(self.video.is_some());
        if let Some(v) = self.video {
            put_codec(w, v.codec);
            let (num, den) = v.framerate.unwrap_or((0, 0));
            w.u32(num);
            w.u32(den);
        }
        w.bool(self.audio.is_some());
        if let Some(a) = self.audio {
            put_codec(w, a.codec);
            w.u32(a.bitrate);
        }
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let (target_bps, min_bps, max_bps) = (r.u32()?, r.u32()?, r.u32()?);
        let video = if r.bool()? {
            let codec = get_codec(r)?;
            let (num, den) = (r.u32()?, r.u32()?);
            Some(VideoFormat {
                codec,
                framerate: (den != 0).then_some((num, den)),
            })
        } else {
            None
        };
        let audio = if r.bool()? {
            Some(AudioFormat {
                codec: get_codec(r)?,
                bitrate: r.u32()?,
            })
        } else {
            None
        };
        Ok(PlayParams {
            target_bps,
            min_bps,
            max_bps,
            video,
            audio,
        })
    }
}

/// The `getVideoInfo` method's reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoInfo {
    /// isSeekable.
    pub seekable: bool,
    /// seekableInit, ms.
    pub seekable_init: u64,
    /// seekableEnd, ms.
    pub seekable_end: u64,
    /// duration, ms.
    pub duration: u64,
}

impl Wire for VideoInfo {
    fn put(&self, w: &mut Writer<'_>) {
        w.bool(self.seekable);
        w.u64(self.seekable_init);
        w.u64(self.seekable_end);
        w.u64(self.duration);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(VideoInfo {
            seekable: r.bool()?,
            seekable_init: r.u64()?,
            seekable_end: r.u64()?,
            duration: r.u64()?,
        })
    }
}

struct PlayerJob {
    core: PlayerCore,
    ctx: JobCtx,
}

pub(crate) fn start(ctx: JobCtx, bytes: &[u8]) -> Result<Box<dyn Job>, String> {
    let p: PlayerParams = params(bytes)?;
    crate::init()?;
    let uri = uri::parse(&p.uri, &["http", "https", "rtsp", "rtsps"]).map_err(|e| e.message)?;
    let out = {
        let ctx = ctx.clone();
        PortOutput::new(
            ctx.id(),
            Arc::new(move |_, pkt| ctx.send_packet(&PacketRef::from(&pkt))),
        )
    };
    let eos = ctx.clone();
    let core = PlayerCore {
        id: format!("job-{}", ctx.id()),
        key: ctx.id(),
        uri,
        use_encoded: p.use_encoded,
        network_cache: p.network_cache.min(60_000),
        guarded: p.guarded,
        shared: player::new_shared(Some(out)),
        events: event_sink(&ctx),
        on_eos: Arc::new(move || eos.end_of_stream()),
    };
    Ok(Box::new(PlayerJob { core, ctx }))
}

fn ms(v: &Value, key: &str) -> u64 {
    v[key].as_i64().unwrap_or(0).max(0) as u64
}

impl Job for PlayerJob {
    fn call(&mut self, method: &str, args: &[u8]) -> Result<Vec<u8>, String> {
        let ctx = self.ctx.clone();
        let mut raise = |ev| emit(&ctx, &ev);
        let done = Vec::new;
        match method {
            "play" => {
                let a: PlayParams = wire::decode(args).map_err(|e| e.to_string())?;
                let s = a.settings();
                self.core
                    .play(s, &mut raise)
                    .map_err(|e| crate::jobs::error_text(&e))?;
                Ok(done())
            }
            "pause" => {
                self.core.pause(&mut raise);
                Ok(done())
            }
            "stop" => {
                self.core.stop(&mut raise);
                Ok(done())
            }
            "setPosition" => {
                let ms: u64 = wire::decode(args).map_err(|e| e.to_string())?;
                self.core
                    .seek(ms)
                    .map_err(|e| crate::jobs::error_text(&e))?;
                Ok(done())
            }
            "getPosition" => Ok(wire::encode(&(self.core.position().as_u64().unwrap_or(0)))),
            "getVideoInfo" => {
                let v = self.core.video_info();
                Ok(wire::encode(&VideoInfo {
                    seekable: v["isSeekable"].as_bool().unwrap_or(false),
                    seekable_init: ms(&v, "seekableInit"),
                    seekable_end: ms(&v, "seekableEnd"),
                    duration: ms(&v, "duration"),
                }))
            }
            "getState" => Ok(wire::encode(&self.core.state().to_owned())),
            // The element was released: answers once its pipeline has stopped (at most 5 s),
            // so that the server counts it until then.
            "release" => {
                self.core.release();
                self.core.wait_stopped(std::time::Duration::from_secs(5));
                Ok(done())
            }
            // The argument: Kurento's GstreamerDotDetails (empty: SHOW_ALL).
            "getGstreamerDot" => {
                let details = String::from_utf8_lossy(args);
                Ok(wire::encode(&self.core.dot_with(&details)))
            }
            _ => Err(format!("the player has no method '{method}'")),
        }
    }

    fn keyframe_request(&mut self) {
        self.core.request_keyframe();
    }

    fn stop(&mut self) {
        self.core.release();
    }
}
