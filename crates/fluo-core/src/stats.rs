//! getStats: the request as an element sees it, and the Kurento shapes every element's report
//! shares (ElementStats, EndpointStats and their MediaLatencyStat lists).
//!
//! As with KMS, the element and endpoint entries (and their latencies) are reported only
//! while the pipeline's `latencyStats` is on; RTP entries are reported whatever it says.

use serde_json::{json, Map, Value};

/// A getStats request.
#[derive(Debug, Clone, Copy)]
pub struct StatsQuery<'a> {
    /// The element's id (its ElementStats / EndpointStats entry is filed under it).
    pub id: &'a str,
    /// Wall-clock milliseconds since the UNIX epoch.
    pub wall_ms: u64,
    /// The `mediaType` argument (`AUDIO`, `VIDEO`, `DATA`); `None` asks for everything.
    pub media: Option<&'a str>,
    /// The pipeline's `latencyStats` property.
    pub latency: bool,
}

/// Average latencies per media kind, in nanoseconds: `[audio, video]`; `None` where nothing
/// was measured (no media of that kind reached the element).
pub type Latencies = [Option<f64>; 2];

impl StatsQuery<'_> {
    /// Whether entries of the media kind `kind` (`AUDIO`, `VIDEO`, `DATA`) are asked for.
    pub fn wants(&self, kind: &str) -> bool {
        self.media.is_none_or(|m| m == kind)
    }

    /// A Stats value with its base fields: `{__module__, __type__, id, type,
    /// timestampMillis}`.
    pub fn base(&self, id: &str, ty: &str, class: &str) -> Value {
        json!({
            "__module__": "kurento",
            "__type__": class,
            "id": id,
            "type": ty,
            "timestampMillis": self.wall_ms,
        })
    }

    /// An RTP stream entry (`inbound` or outbound) with the fields every one carries: the
    /// element fills in its figures. `media` is `AUDIO` or `VIDEO`.
    pub fn rtp_entry(
        &self,
        id: &str,
        inbound: bool,
        ssrc: u32,
        media: &str,
        transport: &str,
    ) -> Value {
        let (ty, class) = if inbound {
            ("inboundrtp", "RTCInboundRTPStreamStats")
        } else {
            ("outboundrtp", "RTCOutboundRTPStreamStats")
        };
        let mut v = self.base(id, ty, class);
        v["ssrc"] = json!(ssrc.to_string());
        v["isRemote"] = json!(false);
        v["mediaTrackId"] = json!(media.to_lowercase());
        v["transportId"] = json!(transport);
        v["codecId"] = json!("");
        v["associateStatsId"] = json!("");
        // Slice loss indications: no browser or tool sends them.
        v["sliCount"] = json!(0);
        v
    }

    /// The `MediaLatencyStat[]` of `lat`, named after the element's input of each kind (the
    /// sink pad names KMS reports), for the kinds asked for.
    pub fn latency_list(&self, lat: &Latencies) -> Value {
        let mut out = vec![];
        for kind in fluo_sfu::MediaKind::ALL {
            let (Some(avg), true) = (lat[kind], self.wants(kind.wire_name())) else {
                continue;
            };
            let kind = kind.wire_name();
            out.push(json!({
                "__module__": "kurento",
                "__type__": "MediaLatencyStat",
                "name": format!("sink_{}_default", kind.to_lowercase()),
                "type": kind,
                "avg": avg,
            }));
        }
        Value::Array(out)
    }

    /// The element's ElementStats entry (its input latencies) into `report`, when
    /// `latencyStats` is on.
    pub fn element_entry(&self, report: &mut Map<String, Value>, input: &Latencies) {
        if !self.latency {
            return;
        }
        let mut e = self.base(self.id, "element", "ElementStats");
        e["inputLatency"] = self.latency_list(input);
        report.insert(self.id.to_string(), e);
    }

    /// The endpoint's EndpointStats entry (input and end-to-end latencies) into `report`,
    /// when `latencyStats` is on.
    pub fn endpoint_entry(
        &self,
        report: &mut Map<String, Value>,
        input: &Latencies,
        e2e: &Latencies,
    ) {
        if !self.latency {
            return;
        }
        let mut e = self.base(self.id, "endpoint", "EndpointStats");
        e["inputLatency"] = self.latency_list(input);
        e["E2ELatency"] = self.latency_list(e2e);
        report.insert(self.id.to_string(), e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_entries_only_with_latency_stats_and_filtered_by_media_type() {
        let mut q = StatsQuery {
            id: "p/e",
            wall_ms: 5,
            media: None,
            latency: false,
        };
        let lat = [Some(1500.0), Some(2500.0)];
        let mut r = Map::new();
        q.element_entry(&mut r, &lat);
        assert!(r.is_empty(), "latencyStats off: nothing, as with KMS");
        q.latency = true;
        q.element_entry(&mut r, &lat);
        let e = &r["p/e"];
        assert_eq!(e["type"], "element");
        assert_eq!(e["inputLatency"][1]["name"], "sink_video_default");
        assert_eq!(e["inputLatency"][1]["avg"], 2500.0);
        q.media = Some("AUDIO");
        let mut r = Map::new();
        q.endpoint_entry(&mut r, &lat, &[None, Some(1.0)]);
        let e = &r["p/e"];
        assert_eq!(e["__type__"], "EndpointStats");
        assert_eq!(e["inputLatency"].as_array().unwrap().len(), 1);
        assert_eq!(e["inputLatency"][0]["type"], "AUDIO");
        assert_eq!(e["E2ELatency"], json!([]));
    }
}
