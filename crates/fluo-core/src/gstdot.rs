//! `getGstreamerDot` / `dumpGstreamerDot`: Fluo's graph of a pipeline's elements, with the
//! GStreamer pipelines that its elements run (players, recorders, filters, transcoders,
//! SRTP) drawn as clusters inside it.

use crate::engine::Engine;
use fluo_api::KurentoError;
use serde_json::Value;
use std::sync::Arc;

/// The GStreamer side of the DOT graphs (see [`Engine::set_pipeline_dot`]).
pub trait PipelineDot: Send + Sync {
    /// The DOT graphs (whole `digraph` texts) of the GStreamer pipelines run for the
    /// elements `owners` (their own, and the transcoders of their output), drawn with
    /// `details` (a `GstreamerDotDetails` value).
    fn graphs(&self, owners: &[String], details: &str) -> Vec<String>;

    /// Writes `dot` where GStreamer writes its graphs (`GST_DEBUG_DUMP_DOT_DIR`) under a
    /// file name made from `name`; returns the file written, or `None` when that directory
    /// is not configured (nothing is written, as with GStreamer). The error is the client's
    /// answer (a file that cannot be written, the bound on dumps reached).
    fn dump(&self, name: &str, dot: &str) -> Result<Option<String>, KurentoError>;
}

/// `digraph` text `g` as cluster number `n` of another graph.
fn as_cluster(g: &str, n: usize) -> Option<String> {
    let open = g.find('{')?;
    let close = g.rfind('}')?;
    if close <= open {
        return None;
    }
    // GStreamer draws one legend node per graph; each cluster gets its own.
    let body = g[open + 1..close].replace("\n  legend [", &format!("\n  legend_{n} ["));
    Some(format!("  subgraph cluster_gst_{n} {{{body}  }}\n"))
}

impl Engine {
    /// Lets getGstreamerDot show the GStreamer pipelines of elements, and dumpGstreamerDot
    /// write graphs.
    pub fn set_pipeline_dot(&mut self, dot: Arc<dyn PipelineDot>) {
        self.pipeline_dot = Some(dot);
    }

    /// The DOT graph of object `id` (a pipeline, or one element and its neighbours) with
    /// the GStreamer pipelines of the elements shown.
    pub(crate) fn gst_dot(&self, id: &str, details: &str) -> String {
        let Some(o) = self.registry.get(id) else {
            return String::new();
        };
        let (pipeline, only) = match (&o.pipeline, o.class.as_str()) {
            (_, "MediaPipeline") => (id.to_string(), None),
            (Some(pl), _) => (pl.clone(), Some(id)),
            (None, _) => return "digraph pipeline {\n}\n".to_string(),
        };
        let mut dot = self.dot(&pipeline, only);
        let Some(source) = &self.pipeline_dot else {
            return dot;
        };
        let owners: Vec<String> = match only {
            Some(e) => vec![e.to_string()],
            None => self
                .registry
                .get(&pipeline)
                .map(|p| p.children.clone())
                .unwrap_or_default(),
        };
        let clusters: String = source
            .graphs(&owners, details)
            .iter()
            .enumerate()
            .filter_map(|(n, g)| as_cluster(g, n))
            .collect();
        if let Some(end) = dot.rfind('}') {
            dot.insert_str(end, &clusters);
        }
        dot
    }

    /// dumpGstreamerDot: the graph of `id` written where GStreamer writes its graphs.
    pub(crate) fn dump_gst_dot(&self, id: &str, details: &str) -> Result<Value, KurentoError> {
        let Some(source) = &self.pipeline_dot else {
            return Ok(Value::Null);
        };
        let dot = self.gst_dot(id, details);
        match source.dump(id, &dot) {
            Ok(Some(path)) => {
                tracing::info!(%id, %path, "GStreamer DOT graph written");
                Ok(Value::Null)
            }
            Ok(None) => {
                tracing::debug!(%id, "dumpGstreamerDot: GST_DEBUG_DUMP_DOT_DIR is not set, nothing written");
                Ok(Value::Null)
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn graphs_become_clusters() {
        let g =
            "digraph pipeline {\n  rankdir=LR;\n  legend [\n    label=\"x\",\n  ];\n  a -> b;\n}\n";
        let c = super::as_cluster(g, 3).unwrap();
        assert_eq!(
            c,
            "  subgraph cluster_gst_3 {\n  rankdir=LR;\n  legend_3 [\n    label=\"x\",\n  ];\n  a -> b;\n  }\n"
        );
        assert_eq!(super::as_cluster("nothing", 0), None);
        assert_eq!(super::as_cluster("} {", 0), None);
    }
}
