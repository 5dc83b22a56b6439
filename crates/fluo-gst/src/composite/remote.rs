//! Composite, AlphaBlending, Mixer and their HubPorts (an AlphaBlending is a Composite whose
//! core lays its inputs out as a blend, `crate::composite::Placement`; a Mixer one whose core
//! routes them, `crate::composite::Route`). The hub itself has no media face; each of its
//! HubPorts
//! is a router node whose input is the hub's input from that port and whose output is the
//! grid and the mix of the other ports (`crate::composite`). With media workers each port is
//! a proxy of a `gst.composite` job on the worker hosting its pipeline (the ports of a hub
//! share its GStreamer pipeline there); with `--workers 0` the pipeline runs here.

use crate::composite::{
    self, Core, Format, Layout, Placement, PortCmd, PortControl, PortHandle, Route,
};
use crate::jobs::{self, CompositeParams};
use crate::remote::proxy::{self, Face, Proxied, Proxy};
use crate::remote::{Local, Remote, Spec};
use crate::Media;
use fluo_api::{ErrorCode, KurentoError};
use fluo_core::{Edge, Element, ElementCx, Factory, FactoryCx, MediaError};
use fluo_sfu::{
    Codec, CodecName, Header, MediaKind, Node, OutputSettings, Packet, PortOutput, SinkCaps,
    SinkCodec, Takes,
};
use fluo_worker::{wire, PacketRef};
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// The Composites of this server and their formats, by id: a HubPort created on one of them
/// becomes one of its ports.
static HUBS: Mutex<Vec<(String, Format)>> = Mutex::new(Vec::new());

fn hubs() -> std::sync::MutexGuard<'static, Vec<(String, Format)>> {
    HUBS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Gives a port its hub's commands: its place in a blend, a Mixer's routes into it (its core
/// here, or its job in a worker).
type Placer = Arc<dyn Fn(PortCmd) + Send + Sync>;

/// The placers of this server's hub ports, by port id.
static PLACERS: Mutex<Vec<(String, Placer)>> = Mutex::new(Vec::new());

fn placers() -> std::sync::MutexGuard<'static, Vec<(String, Placer)>> {
    PLACERS.lock().unwrap_or_else(|p| p.into_inner())
}

fn forget_placer(id: &str) {
    placers().retain(|(p, _)| p != id);
}

/// KMS's AlphaBlending output before its master's size is known: 640x480 at 15 fps.
const BLEND_FORMAT: (u32, u32, u32) = (640, 480, 15);

/// Makes Composites.
pub(crate) struct CompositeFactory {
    pub(crate) media: Media,
}

fn int_param(
    p: &Map<String, Value>,
    name: &str,
    range: &std::ops::RangeInclusive<u32>,
) -> Result<u32, KurentoError> {
    let v = p.get(name).and_then(Value::as_i64).unwrap_or_default();
    u32::try_from(v)
        .ok()
        .filter(|v| range.contains(v))
        .ok_or_else(|| {
            KurentoError::new(
                ErrorCode::MediaObjectIllegalParamError,
                format!(
                    "Composite '{name}' must be within {}..{} (got {v})",
                    range.start(),
                    range.end()
                ),
            )
        })
}

impl Factory for CompositeFactory {
    fn create(&self, cx: &FactoryCx<'_>) -> Result<Box<dyn Element>, KurentoError> {
        let format = Format {
            width: int_param(cx.params, "width", &composite::WIDTHS)?,
            height: int_param(cx.params, "height", &composite::WIDTHS)?,
            fps: int_param(cx.params, "framerate", &composite::RATES)?,
            bps: self.media.settings.get(cx.id).video_bps(),
            layout: Layout::Grid,
        };
        hubs().push((cx.id.to_string(), format));
        Ok(Box::new(CompositeHub {
            id: cx.id.to_string(),
        }))
    }
}

/// Makes AlphaBlendings: Composites whose layout is the blend.
pub(crate) struct AlphaBlendingFactory {
    pub(crate) media: Media,
}

impl Factory for AlphaBlendingFactory {
    fn create(&self, cx: &FactoryCx<'_>) -> Result<Box<dyn Element>, KurentoError> {
        let (width, height, fps) = BLEND_FORMAT;
        let format = Format {
            width,
            height,
            fps,
            bps: self.media.settings.get(cx.id).video_bps(),
            layout: Layout::Blend,
        };
        hubs().push((cx.id.to_string(), format));
        Ok(Box::new(CompositeHub {
            id: cx.id.to_string(),
        }))
    }
}

/// Makes Mixers: Composites whose ports get what `connect(media, source, sink)` routes them.
pub(crate) struct MixerFactory {
    pub(crate) media: Media,
}

impl Factory for MixerFactory {
    fn create(&self, cx: &FactoryCx<'_>) -> Result<Box<dyn Element>, KurentoError> {
        // No grid: the size and rate are the token ones of its core's idle background.
        let format = Format {
            width: 16,
            height: 16,
            fps: 1,
            bps: self.media.settings.get(cx.id).video_bps(),
            layout: Layout::Mixer,
        };
        hubs().push((cx.id.to_string(), format));
        Ok(Box::new(CompositeHub {
            id: cx.id.to_string(),
        }))
    }
}

/// A Composite or an AlphaBlending: its ports do the work.
struct CompositeHub {
    id: String,
}

/// Reads a number the engine has checked against the kmd.
fn num(p: &Map<String, Value>, name: &str) -> f64 {
    p.get(name).and_then(Value::as_f64).unwrap_or_default()
}

impl Element for CompositeHub {
    /// AlphaBlending's setMaster and setPortProperties, Mixer's connect and disconnect (the
    /// engine has checked that the ports are this hub's, the values in range, the media type
    /// one the Mixer routes).
    fn invoke(
        &mut self,
        _cx: &mut ElementCx<'_>,
        method: &str,
        p: &Map<String, Value>,
    ) -> Option<Result<Value, KurentoError>> {
        let z = p.get("zOrder").and_then(Value::as_i64).unwrap_or_default();
        let z = i32::try_from(z).unwrap_or(if z < 0 { i32::MIN } else { i32::MAX });
        let source = || {
            let s = p.get("source").and_then(Value::as_str).unwrap_or_default();
            s.to_string()
        };
        let media = p.get("media").and_then(Value::as_str);
        let (port, place) = match (method, media) {
            ("setMaster", _) => ("source", PortCmd::Place(Placement::Master(z))),
            ("setPortProperties", _) => {
                let r = ["relativeX", "relativeY", "relativeWidth", "relativeHeight"];
                (
                    "port",
                    PortCmd::Place(Placement::Rect(r.map(|n| num(p, n)), z)),
                )
            }
            ("connect", Some("VIDEO")) => ("sink", PortCmd::Route(Route::Video(source()))),
            ("connect" | "disconnect", Some("AUDIO")) => (
                "sink",
                PortCmd::Route(Route::Audio(source(), method == "connect")),
            ),
            _ => return None,
        };
        let port = p.get(port).and_then(Value::as_str).unwrap_or_default();
        let placer = placers()
            .iter()
            .find(|(id, _)| id == port)
            .map(|(_, f)| f.clone());
        Some(match placer {
            Some(f) => {
                f(place);
                Ok(Value::Null)
            }
            None => Err(KurentoError::new(
                ErrorCode::UnexpectedError,
                format!("The HubPort '{port}' has no media in this hub"),
            )),
        })
    }

    fn released(&mut self) {
        hubs().retain(|(id, _)| *id != self.id);
    }
}

impl Drop for CompositeHub {
    fn drop(&mut self) {
        hubs().retain(|(id, _)| *id != self.id);
    }
}

/// Makes HubPorts: a Composite's, or (for the routing hubs) fluo-core's.
pub(crate) struct HubPortFactory {
    pub(crate) media: Media,
}

impl Factory for HubPortFactory {
    fn create(&self, cx: &FactoryCx<'_>) -> Result<Box<dyn Element>, KurentoError> {
        let hub = cx
            .params
            .get("hub")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let format = hubs().iter().find(|(id, _)| id == hub).map(|(_, f)| *f);
        let Some(format) = format else {
            return Ok(Box::new(fluo_core::HubPort));
        };
        if let Some(workers) = &self.media.workers {
            let params = CompositeParams {
                hub: hub.to_string(),
                width: format.width,
                height: format.height,
                fps: format.fps,
                target_bps: format.bps,
                layout: format.layout,
                port: cx.id.to_string(),
            };
            let remote = Remote::start(
                workers,
                &self.media,
                cx,
                Spec {
                    kind: jobs::COMPOSITE,
                    params: wire::encode(&params),
                    error: MediaError::Hub,
                    // The grid is encoded by the job, to the port's forced codec.
                    local: Local {
                        encodes: true,
                        ..Local::default()
                    },
                    caps: |_, kind| caps(kind),
                    // The port's settings go to its job by setOutput as they change (not
                    // with its input, which the hub decodes whatever its settings).
                    follows_settings: false,
                },
            );
            (self.media.settings).watch(cx.id, remote_output(cx.id, remote.clone()));
            let job = remote.clone();
            let placer: Placer = Arc::new(move |c: PortCmd| {
                let (method, text) = c.call();
                job.call(method, wire::encode(&text), move |r| {
                    if let Err(e) = r {
                        tracing::warn!("the hub's port does not take {method}: {}", e.message);
                    }
                });
            });
            placers().push((cx.id.to_string(), placer));
            let face = RemotePort {
                id: cx.id.to_string(),
                media: self.media.clone(),
            };
            return Ok(Proxied::boxed(cx.id, remote, &self.media, face));
        }
        let (key, control) = local_port(&self.media, cx.id, hub, format)?;
        let placer: Placer = {
            let control = control.clone();
            Arc::new(move |c: PortCmd| {
                if let Err(e) = control.command(c) {
                    tracing::warn!("the hub's port does not take the command: {e}");
                }
            })
        };
        placers().push((cx.id.to_string(), placer));
        (self.media.settings).watch(cx.id, local_output(cx.id, control.clone()));
        Ok(Box::new(CompositePort {
            id: cx.id.to_string(),
            key,
            control,
            media: self.media.clone(),
        }))
    }
}

/// What a Composite's port takes: any codec its pipeline decodes, VP8 or Opus otherwise.
fn caps(kind: MediaKind) -> SinkCaps {
    let target = match kind {
        MediaKind::Video => CodecName::Vp8,
        MediaKind::Audio => CodecName::Opus,
    };
    SinkCaps {
        takes: Takes::Codecs(
            composite::decodable(kind)
                .into_iter()
                .map(SinkCodec::new)
                .collect(),
        ),
        targets: vec![Codec::new(target)],
        transcoder: false,
    }
}

/// A port of `hub` in this process: its router key, and its control.
fn local_port(
    media: &Media,
    id: &str,
    hub: &str,
    format: Format,
) -> Result<(u64, PortControl), KurentoError> {
    let failed = |e: String| {
        KurentoError::new(
            ErrorCode::UnexpectedError,
            format!("The Composite's pipeline does not start: {e}"),
        )
    };
    let core = Core::get(hub, format).map_err(failed)?;
    let out: Arc<OnceLock<PortOutput>> = Arc::default();
    let key = Arc::new(AtomicU64::new(0));
    let send = {
        let out = out.clone();
        Arc::new(move |p: &PacketRef<'_>| {
            if let Some(o) = out.get() {
                o.send(p.to_packet());
            }
        })
    };
    let up = {
        let (bus, key) = (media.bus.clone(), key.clone());
        Arc::new(move || bus.request_keyframe(key.load(Ordering::Acquire)))
    };
    let port = PortHandle::new(core, id, send, up).map_err(failed)?;
    let control = port.control();
    let k = media.bus.add_port(
        id,
        Box::new(move |o| {
            let _ = out.set(o);
            Box::new(LocalPort { port }) as Box<dyn Node>
        }),
    );
    key.store(k, Ordering::Release);
    Ok((k, control))
}

/// A Composite's port in this process's router.
struct LocalPort {
    port: PortHandle,
}

impl Node for LocalPort {
    fn caps(&self, kind: MediaKind) -> SinkCaps {
        caps(kind)
    }

    fn push(&mut self, _now: std::time::Instant, pkt: &Packet<'_>, header: Header) {
        self.port.push(&PacketRef {
            kind: pkt.kind,
            codec: pkt.codec,
            seq: header.seq,
            timestamp: header.ts,
            ssrc: header.ssrc,
            marker: pkt.marker,
            payload: pkt.payload,
        });
    }

    fn request_keyframe(&mut self, kind: MediaKind) {
        if kind == MediaKind::Video {
            self.port.keyframe();
        }
    }

    /// The grid is encoded here, to the port's forced codec.
    fn applies_format(&self, _kind: MediaKind) -> bool {
        true
    }
}

/// Hands port `id`'s output settings to its job (`setOutput`) whenever they change.
fn remote_output(id: &str, job: Remote) -> fluo_sfu::Watcher {
    let id = id.to_string();
    Arc::new(move |s: &OutputSettings| {
        let id = id.clone();
        let args = wire::encode(&jobs::PlayParams::of(s));
        job.call("setOutput", args, move |r| {
            if let Err(e) = r {
                cannot_send(&id, &e.message);
            }
        });
    })
}

/// Hands port `id`'s output settings to its core here whenever they change.
fn local_output(id: &str, port: PortControl) -> fluo_sfu::Watcher {
    let id = id.to_string();
    Arc::new(move |s: &OutputSettings| {
        if let Err(e) = port.set_output(s) {
            cannot_send(&id, &e);
        }
    })
}

fn cannot_send(id: &str, e: &dyn std::fmt::Display) {
    tracing::warn!(%id, "the Composite's port does not take its output settings: {e}");
}

/// A port's element has gone: its settings and its hub's commands no longer reach it.
fn forget_port(media: &Media, id: &str) {
    forget_placer(id);
    media.settings.unwatch(id);
}

/// A HubPort of a Composite whose job runs in a media worker (the shared proxy's face).
struct RemotePort {
    id: String,
    media: Media,
}

impl Drop for RemotePort {
    fn drop(&mut self) {
        forget_port(&self.media, &self.id);
    }
}

impl Face for RemotePort {
    fn get_property(&self, p: &Proxy, name: &str) -> Option<Value> {
        (name == "elementGstreamerDot").then(|| p.read("getGstreamerDot", proxy::dot))
    }
}

/// A HubPort of a Composite in this process.
struct CompositePort {
    id: String,
    key: u64,
    control: PortControl,
    media: Media,
}

impl Element for CompositePort {
    fn get_property(&self, name: &str) -> Option<Value> {
        (name == "elementGstreamerDot")
            .then(|| json!(crate::dot::without_secrets(&self.control.dot("SHOW_ALL"))))
    }

    fn media_connected(&mut self, _cx: &mut ElementCx<'_>, edge: &Edge) {
        self.media.route(self.key, &self.id, edge, true);
    }

    fn media_disconnected(&mut self, _cx: &mut ElementCx<'_>, edge: &Edge) {
        self.media.route(self.key, &self.id, edge, false);
    }

    fn released(&mut self) {
        forget_port(&self.media, &self.id);
        self.media.bus.remove_port(self.key);
    }
}

impl Drop for CompositePort {
    fn drop(&mut self) {
        forget_port(&self.media, &self.id);
    }
}
