//! A Mixer's routes on the Composite's core: `connect(VIDEO, source, sink)` gives the sink
//! port the source port's video (one source per sink: a new one replaces the old), and
//! `connect(AUDIO, source, sink)` adds the source's audio to the sink's mix (each of n sources
//! at 1/n, as the grid's mix), `disconnect(AUDIO, ...)` takes it out. Routes name ports by
//! their HubPort ids and are applied whenever ports or inputs come and go, so a route may
//! name a port whose job has not started yet, or whose input has not come yet.

use super::{levels, lock, tee_of, Core, Placement, State};
use fluo_sfu::MediaKind;
use gstreamer as gst;

/// How a hub's core makes each port's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Composite: every video input in a grid, every other port's audio mixed.
    Grid,
    /// AlphaBlending: the master's frame with the others blended on it, audio as the grid's.
    Blend,
    /// Mixer: the video of one chosen port, the mix of the chosen ports' audio.
    Mixer,
}

impl Layout {
    /// The layout's number on a worker's wire.
    pub(crate) fn code(self) -> u32 {
        match self {
            Layout::Grid => 0,
            Layout::Blend => 1,
            Layout::Mixer => 2,
        }
    }

    /// Reads [`Layout::code`].
    pub(crate) fn from_code(c: u32) -> Option<Layout> {
        [Layout::Grid, Layout::Blend, Layout::Mixer]
            .into_iter()
            .find(|l| l.code() == c)
    }
}

/// One change of a Mixer's routes, sent to the sink port's core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// The sink takes this port's video from now on.
    Video(String),
    /// This port's audio is in the sink's mix (`true`) or not.
    Audio(String, bool),
}

impl Route {
    /// The route as the text a worker's job reads ([`Route::parse`]).
    pub(crate) fn text(&self) -> String {
        match self {
            Route::Video(src) => format!("video {src}"),
            Route::Audio(src, true) => format!("audio+ {src}"),
            Route::Audio(src, false) => format!("audio- {src}"),
        }
    }

    /// Reads [`Route::text`].
    pub(crate) fn parse(s: &str) -> Result<Route, String> {
        let (kind, src) = s
            .split_once(' ')
            .filter(|(_, src)| !src.is_empty())
            .ok_or_else(|| format!("bad route '{s}'"))?;
        let src = src.to_string();
        match kind {
            "video" => Ok(Route::Video(src)),
            "audio+" => Ok(Route::Audio(src, true)),
            "audio-" => Ok(Route::Audio(src, false)),
            _ => Err(format!("bad route '{s}'")),
        }
    }
}

/// What a hub's element asks of one of its ports' cores.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PortCmd {
    /// AlphaBlending: where the port is drawn.
    Place(Placement),
    /// Mixer: what the port (as a sink) is given.
    Route(Route),
}

impl PortCmd {
    /// The job's method that takes the command, and its argument.
    pub(crate) fn call(&self) -> (&'static str, String) {
        match self {
            PortCmd::Place(p) => ("setPlacement", p.text()),
            PortCmd::Route(r) => ("setRoute", r.text()),
        }
    }
}

/// A Mixer's routes, by HubPort id.
#[derive(Debug, Default)]
pub(crate) struct Routes {
    /// (source, sink): the source's audio is in the sink's mix.
    audio: Vec<(String, String)>,
    /// (sink, source): the sink sends the source's video.
    video: Vec<(String, String)>,
}

impl Routes {
    /// Forgets the routes of a port that has gone.
    pub(crate) fn forget(&mut self, name: &str) {
        self.audio.retain(|(a, b)| a != name && b != name);
        self.video.retain(|(a, b)| a != name && b != name);
    }
}

impl Core {
    /// Changes the routes into port `sink` (a Mixer's).
    pub(super) fn route(&self, sink: u64, r: Route) -> Result<(), String> {
        if self.format.layout != Layout::Mixer {
            return Err("the hub is no Mixer".into());
        }
        let mut st = lock(&self.state);
        let name = (st.ports.iter())
            .find(|p| p.id == sink)
            .map(|p| p.name.clone())
            .ok_or("port gone")?;
        let routes = &mut st.routes;
        match r {
            Route::Video(src) => {
                routes.video.retain(|(k, _)| *k != name);
                routes.video.push((name, src));
            }
            Route::Audio(src, on) => {
                routes.audio.retain(|(s, k)| !(*s == src && *k == name));
                if on {
                    routes.audio.push((src, name));
                }
            }
        }
        self.rewire(&mut st);
        Ok(())
    }

    /// Makes the pipeline carry what the routes say: each port's mix holds the audio inputs
    /// routed to it, each port sends the video input routed to it (from a keyframe).
    pub(super) fn rewire(&self, st: &mut State) {
        let id_of = |st: &State, name: &str| st.ports.iter().find(|p| p.name == name).map(|p| p.id);
        // Audio: links into each mix added and removed.
        for i in 0..st.ports.len() {
            let sink = st.ports[i].name.clone();
            let want: Vec<(u64, gst::Element)> = (st.routes.audio.iter())
                .filter(|(_, k)| *k == sink)
                .filter_map(|(s, _)| st.ports.iter().find(|p| p.name == *s && p.name != sink))
                .filter_map(|p| Some((p.id, tee_of(p)?)))
                .collect();
            let (gone, kept): (Vec<_>, Vec<_>) = (st.ports[i].links.drain(..))
                .partition(|l| !want.iter().any(|(from, _)| *from == l.from));
            st.ports[i].links = kept;
            let mixer = st.ports[i].mixer.clone();
            for l in gone {
                let tee = st.ports.iter().find(|p| p.id == l.from).and_then(tee_of);
                self.unlink(l, tee.as_ref(), &mixer);
            }
            for (from, tee) in want {
                if st.ports[i].links.iter().any(|l| l.from == from) {
                    continue;
                }
                match self.link(from, &tee, &mixer) {
                    Ok(l) => st.ports[i].links.push(l),
                    Err(e) => tracing::warn!(hub = %self.key, "mixer audio route: {e}"),
                }
            }
            levels(&st.ports[i]);
        }
        // Video: each sink in the encode of its source's input, in its codec.
        let mut branches = lock(&self.branches);
        for p in &st.ports {
            let src = (st.routes.video.iter())
                .find(|(k, _)| *k == p.name)
                .and_then(|(_, s)| id_of(st, s))
                .and_then(|s| {
                    let port = st.ports.iter().find(|q| q.id == s)?;
                    let input = port.inputs[MediaKind::Video].as_ref()?;
                    Some((s, input.elements.last()?.clone()))
                });
            let now = (branches.iter())
                .find(|b| b.has(p.id))
                .map(|b| (b.source, b.key));
            if now.is_some() && now == src.as_ref().map(|(s, _)| (*s, p.key)) {
                continue;
            }
            for b in branches.iter() {
                lock(&b.outs).retain(|(o, _)| *o != p.id);
            }
            let Some((s, tee)) = src else { continue };
            if let Err(e) = self.join(&mut branches, p.id, p.key, s, &tee, &p.out) {
                tracing::warn!(hub = %self.key, "mixer video route: {e}");
            }
        }
        self.prune(&mut branches);
        tracing::debug!(hub = %self.key, audio = st.routes.audio.len(), video = st.routes.video.len(), "mixer routes");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_cross_to_a_worker_unchanged() {
        let id = "p/0b9e_kurento.HubPort";
        for r in [
            Route::Video(id.into()),
            Route::Audio(id.into(), true),
            Route::Audio(id.into(), false),
        ] {
            assert_eq!(Route::parse(&r.text()), Ok(r));
        }
        for bad in ["video", "video ", "mute x", ""] {
            assert!(Route::parse(bad).is_err(), "{bad}");
        }
    }
}
