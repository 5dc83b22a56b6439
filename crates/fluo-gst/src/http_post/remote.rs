//! HttpPostEndpoint as a proxy of a `gst.http_post` job in a media worker: the uploads'
//! steps are the job's methods (`begin`, `data`, `end`, `abort`), each answered with the
//! pipeline's status.

use super::session::{Endpoint, Feed, Step, StepReply};
use super::PostStatus;
use crate::jobs::{self, HttpPostParams, PlayParams};
use crate::remote::proxy::{bad_reply, dot, Face, Proxied, Proxy};
use crate::remote::{Local, Remote, Spec};
use crate::Media;
use fluo_api::KurentoError;
use fluo_core::{Element, ElementCx, FactoryCx, MediaError};
use fluo_sfu::{MediaKind, SinkCaps};
use fluo_worker::{wire, Supervisor};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Duration;

/// The element takes nothing from the router: it is a source only.
fn caps(_: &Local, _: MediaKind) -> SinkCaps {
    SinkCaps::codecs([])
}

/// The HttpPostEndpoint `cx` asks for, its pipeline a job on `workers`; `url` is the
/// listener's base URL and the disconnection timeout.
pub(crate) fn create(
    workers: &Supervisor,
    media: &Media,
    cx: &FactoryCx<'_>,
    use_encoded: bool,
    (base, timeout): (String, Duration),
) -> Box<dyn Element> {
    let params = HttpPostParams { use_encoded };
    let remote = Remote::start(
        workers,
        media,
        cx,
        Spec {
            kind: jobs::HTTP_POST,
            params: wire::encode(&params),
            error: MediaError::HttpPost,
            local: Local {
                encodes: !use_encoded,
                ..Local::default()
            },
            caps,
            follows_settings: false,
        },
    );
    let feed = RemoteFeed {
        remote: remote.clone(),
        media: media.clone(),
        id: cx.id.to_string(),
    };
    let endpoint = Endpoint::register(media, cx.id, Arc::new(feed), base, timeout);
    Proxied::boxed(cx.id, remote, media, PostFace { endpoint })
}

/// The job as the listener's uploads drive it.
struct RemoteFeed {
    remote: Remote,
    media: Media,
    id: String,
}

fn status(b: &[u8]) -> Result<PostStatus, KurentoError> {
    wire::decode::<PostStatus>(b).map_err(bad_reply)
}

impl Feed for RemoteFeed {
    fn step(&self, step: Step, done: StepReply) {
        let (method, args) = match step {
            Step::Begin => {
                let s = self.media.settings.get(&self.id);
                ("begin", wire::encode(&PlayParams::of(&s)))
            }
            Step::Data(b) => ("data", b),
            Step::End => ("end", Vec::new()),
            Step::Abort(why) => ("abort", why.into_bytes()),
        };
        self.remote
            .call(method, args, move |r| done(r.and_then(|b| status(&b))));
    }
}

struct PostFace {
    endpoint: Arc<Endpoint>,
}

impl Face for PostFace {
    fn invoke(
        &mut self,
        _p: &Proxy,
        _cx: &mut ElementCx<'_>,
        method: &str,
        _params: &Map<String, Value>,
    ) -> Option<Result<Value, KurentoError>> {
        match method {
            "getUrl" => Some(Ok(json!(self.endpoint.url()))),
            _ => None,
        }
    }

    fn get_property(&self, p: &Proxy, name: &str) -> Option<Value> {
        match name {
            "elementGstreamerDot" => Some(p.read("getGstreamerDot", dot)),
            _ => None,
        }
    }

    fn read_property(
        &mut self,
        p: &Proxy,
        cx: &mut ElementCx<'_>,
        name: &str,
    ) -> Option<Result<Value, KurentoError>> {
        match name {
            "elementGstreamerDot" => Some(p.remote.answer(cx, "getGstreamerDot", Vec::new(), dot)),
            _ => None,
        }
    }

    fn released(&mut self, _p: &Proxy) {
        self.endpoint.release();
    }
}
