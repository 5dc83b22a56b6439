//! WebRtcEndpoint and BaseRtpEndpoint settings that shape an endpoint's session: the
//! constructor's `useDataChannels`, `certificateKeyType` and `qosDscp`, and the `mtu`,
//! `rembParams` and `networkInterfaces` properties. Values arrive type-checked against the
//! model; here they are checked for what Fluo can do with them.

use fluo_api::{ErrorCode, KurentoError};
use serde_json::{json, Map, Value};

/// KMS's default MTU (BaseRtpEndpoint.mtu): the largest datagram an endpoint sends.
pub(crate) const DEFAULT_MTU: usize = 1200;

/// What a WebRtcEndpoint was created with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CtorOptions {
    /// useDataChannels: negotiate SCTP data channels (m=application).
    pub data_channels: bool,
    /// qosDscp as a DSCP code point (0-63), `None` for NO_VALUE / NO_DSCP.
    pub dscp: Option<u8>,
    /// `fluoKeyframeInterval` (a Fluo extension, docs/compatibility.md): the minimum
    /// spacing of the keyframe requests the endpoint sends its peer, when not the media
    /// router's (a cascade relay's receiving end: one a second).
    pub keyframe_interval: Option<std::time::Duration>,
}

/// The constructor parameter that sets [`CtorOptions::keyframe_interval`], in ms.
pub(crate) const KEYFRAME_INTERVAL_PARAM: &str = "fluoKeyframeInterval";

/// The values [`KEYFRAME_INTERVAL_PARAM`] takes, in ms.
/// The values [`KEYFRAME_INTERVAL_PARAM`] takes, in ms: never below the media router's own
/// spacing (300 ms per source; a client cannot loosen it), at most a minute.
const KEYFRAME_INTERVAL_MS: std::ops::RangeInclusive<i64> = 300..=60_000;

/// The interval [`KEYFRAME_INTERVAL_PARAM`]'s value `v` gives: an `int` as the model's
/// parameters are checked (an integral number within 32 bits, `1000.0` included, as
/// jsoncpp's `isInt` takes it; anything else 40001 MARSHALL_ERROR), within
/// [`KEYFRAME_INTERVAL_MS`] (else 40107).
fn keyframe_interval(v: &Value) -> Result<std::time::Duration, KurentoError> {
    let int = v.as_i64().or_else(|| {
        let f = v.as_f64()?;
        (f.fract() == 0.0 && f >= f64::from(i32::MIN) && f <= f64::from(i32::MAX))
            .then_some(f as i64)
    });
    let ms = int.filter(|n| i32::try_from(*n).is_ok()).ok_or_else(|| {
        KurentoError::marshall(format!(
            "'{KEYFRAME_INTERVAL_PARAM}' parameter should be a int"
        ))
    })?;
    if !KEYFRAME_INTERVAL_MS.contains(&ms) {
        return Err(KurentoError::illegal_param(format!(
            "'{KEYFRAME_INTERVAL_PARAM}' must be a number of ms from {} to {}",
            KEYFRAME_INTERVAL_MS.start(),
            KEYFRAME_INTERVAL_MS.end()
        )));
    }
    Ok(std::time::Duration::from_millis(ms.unsigned_abs()))
}

impl CtorOptions {
    /// Reads the constructor parameters (`params`, defaults applied; `given`, as sent).
    pub fn parse(
        params: &Map<String, Value>,
        given: &Map<String, Value>,
    ) -> Result<CtorOptions, KurentoError> {
        // str0m's DTLS (dimpl) signs with ECDSA keys only: an RSA certificate cannot be
        // offered. Kurento's default (RSA) is taken as "no preference"; asking for RSA by name
        // is refused rather than silently served with ECDSA.
        if given.get("certificateKeyType").and_then(Value::as_str) == Some("RSA") {
            return Err(KurentoError::new(
                ErrorCode::NotImplemented,
                "certificateKeyType RSA is not supported: Fluo's DTLS certificates are ECDSA (P-256)",
            ));
        }
        let dscp = match params.get("qosDscp").and_then(Value::as_str) {
            None => None,
            Some(name) => dscp_code(name).ok_or_else(|| {
                KurentoError::illegal_param(format!("'qosDscp': unknown DSCP value '{name}'"))
            })?,
        };
        let keyframe_interval = match given.get(KEYFRAME_INTERVAL_PARAM) {
            None | Some(Value::Null) => None,
            Some(v) => Some(keyframe_interval(v)?),
        };
        Ok(CtorOptions {
            data_channels: params.get("useDataChannels").and_then(Value::as_bool) == Some(true),
            dscp,
            keyframe_interval,
        })
    }

    /// The TOS / traffic class byte of this endpoint's datagrams (0: not marked).
    pub fn tos(&self) -> u8 {
        self.dscp.map_or(0, |d| d << 2)
    }
}

/// The DSCP code point of a Kurento DSCPValue (Kurento's mapping: RFC 8837's WebRTC values,
/// the IANA registry's names, and Chrome's RTCPriority markings). `Some(None)`: no marking;
/// `None`: not a DSCPValue.
pub(crate) fn dscp_code(name: &str) -> Option<Option<u8>> {
    let code = match name {
        "NO_VALUE" | "NO_DSCP" => return Some(None),
        "AUDIO_VERYLOW" | "VIDEO_VERYLOW" | "DATA_VERYLOW" | "LE" => 1,
        "AUDIO_LOW" | "VIDEO_LOW" | "DATA_LOW" | "CHROME_LOW" | "CS0" => 0,
        "AUDIO_MEDIUM" | "AUDIO_HIGH" | "EF" => 46,
        "VIDEO_MEDIUM" | "VIDEO_HIGH" | "AF42" => 36,
        "VIDEO_MEDIUM_THROUGHPUT" | "AF43" => 38,
        "VIDEO_HIGH_THROUGHPUT" | "AF41" => 34,
        "DATA_MEDIUM" | "AF11" => 10,
        "DATA_HIGH" | "AF21" => 18,
        "CHROME_VERYLOW" | "CS1" => 8,
        "CHROME_MEDIUM" | "CHROME_HIGH" | "CS7" => 56,
        "CS2" => 16,
        "CS3" => 24,
        "CS4" => 32,
        "CS5" => 40,
        "CS6" => 48,
        "AF12" => 12,
        "AF13" => 14,
        "AF22" => 20,
        "AF23" => 22,
        "AF31" => 26,
        "AF32" => 28,
        "AF33" => 30,
        "VOICEADMIT" => 44,
        _ => return None,
    };
    Some(Some(code))
}

/// Checks an `mtu` value: what str0m can size its datagrams to.
pub(crate) fn check_mtu(value: &Value) -> Result<usize, KurentoError> {
    let (min, max) = (
        str0m::DATAGRAM_MTU_TARGET_MIN,
        str0m::DATAGRAM_MTU_TARGET_MAX,
    );
    value
        .as_i64()
        .and_then(|v| usize::try_from(v).ok())
        .filter(|v| (min..=max).contains(v))
        .ok_or_else(|| {
            KurentoError::illegal_param(format!("'mtu' must be {min}-{max} bytes, not {value}"))
        })
}

/// Kurento's RembParams fields and their defaults. Only `rembOnConnect` maps onto what Fluo
/// computes; the others tune KMS's own loss-based receive estimator, which Fluo does not
/// run (it relays its viewers' estimates instead, see `core::update_remb`).
const REMB_ESTIMATOR_FIELDS: [(&str, Option<f64>); 7] = [
    ("packetsRecvIntervalTop", Some(100.0)),
    ("exponentialFactor", Some(0.04)),
    ("linealFactorMin", None),
    ("linealFactorGrade", Some(30.0)),
    ("decrementFactor", Some(0.5)),
    ("thresholdFactor", Some(0.8)),
    ("upLosses", Some(12.0)),
];

/// Kurento's default rembOnConnect, in bps.
pub(crate) const DEFAULT_REMB_ON_CONNECT: u64 = 300_000;

/// Checks a RembParams value (struct defaults already filled in by the model checker) and
/// returns its `rembOnConnect` in bps. A field of KMS's estimator set to anything but its
/// default is refused with NOT_IMPLEMENTED: Fluo would not honour it.
pub(crate) fn remb_on_connect(value: &Value) -> Result<u64, KurentoError> {
    for (name, default) in REMB_ESTIMATOR_FIELDS {
        let Some(v) = value.get(name).filter(|v| !v.is_null()) else {
            continue;
        };
        let same = match (v.as_f64(), default) {
            (Some(x), Some(d)) => (x - d).abs() < 1e-6,
            _ => false,
        };
        if !same {
            return Err(KurentoError::new(
                ErrorCode::NotImplemented,
                format!(
                    "rembParams.{name} is not supported: Fluo does not run Kurento's receive-side \
                     estimator (only rembOnConnect applies)"
                ),
            ));
        }
    }
    match value.get("rembOnConnect").filter(|v| !v.is_null()) {
        None => Ok(DEFAULT_REMB_ON_CONNECT),
        Some(v) => v
            .as_i64()
            .and_then(|n| u64::try_from(n).ok())
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                KurentoError::illegal_param("'rembParams.rembOnConnect' must be > 0 (bps)")
            }),
    }
}

/// REMB lifting the rembOnConnect bound once nothing else limits a publisher: far above
/// any camera's bitrate, so the browser's own estimate decides.
pub(crate) const REMB_UNBOUNDED: u64 = 1_000_000_000;

/// The start of the REMB sent to a publisher (rembParams.rembOnConnect): whether the bound
/// sent at connection is in force and must be lifted when nothing limits.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct RembStart {
    capped: bool,
}

impl RembStart {
    /// The REMB to send: `lowest` (the least the viewers and settings allow); the first one
    /// at most `on_connect` (rembOnConnect in bps, when the application set rembParams); when
    /// nothing limits any more after that bound, one that lifts it. `None`: send nothing.
    pub fn target(
        &mut self,
        on_connect: Option<u64>,
        lowest: Option<u64>,
        first: bool,
    ) -> Option<u64> {
        match (on_connect.filter(|_| first), lowest) {
            (Some(start), lowest) => {
                self.capped = true;
                Some(lowest.map_or(start, |l| l.min(start)))
            }
            (None, Some(l)) => {
                self.capped = false;
                Some(l)
            }
            (None, None) => std::mem::take(&mut self.capped).then_some(REMB_UNBOUNDED),
        }
    }
}

/// The RembParams an endpoint reads back: Kurento's defaults with its rembOnConnect.
pub(crate) fn remb_params_value(on_connect: u64) -> Value {
    let mut v = json!({"__module__": "kurento", "__type__": "RembParams"});
    for (name, default) in REMB_ESTIMATOR_FIELDS {
        if let Some(d) = default {
            v[name] = if name == "packetsRecvIntervalTop" || name == "upLosses" {
                json!(d as i64)
            } else {
                json!(d)
            };
        }
    }
    v["rembOnConnect"] = json!(on_connect);
    v
}

/// Parses `networkInterfaces` (comma-separated interface names; empty: every interface the
/// server uses) against the interfaces of the media sockets.
pub(crate) fn network_interfaces(
    text: &str,
    known: &[(std::net::SocketAddr, String)],
) -> Result<Option<Vec<String>>, KurentoError> {
    let names: Vec<String> = text
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(String::from)
        .collect();
    if names.is_empty() {
        return Ok(None);
    }
    let mut available: Vec<&str> = known.iter().map(|(_, n)| n.as_str()).collect();
    available.sort_unstable();
    available.dedup();
    if let Some(bad) = names.iter().find(|n| !available.contains(&n.as_str())) {
        return Err(KurentoError::illegal_param(format!(
            "'networkInterfaces': the server has no media socket on '{bad}' (it has: {})",
            available.join(", ")
        )));
    }
    Ok(Some(names))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dscp_names_map_to_kurento_code_points() {
        assert_eq!(dscp_code("NO_VALUE"), Some(None));
        assert_eq!(dscp_code("EF"), Some(Some(46)));
        assert_eq!(dscp_code("AUDIO_HIGH"), Some(Some(46)));
        assert_eq!(dscp_code("VIDEO_HIGH_THROUGHPUT"), Some(Some(34)));
        assert_eq!(dscp_code("CHROME_VERYLOW"), Some(Some(8)));
        assert_eq!(dscp_code("AF43"), Some(Some(38)));
        assert_eq!(dscp_code("LOUD"), None);
        let o = CtorOptions {
            data_channels: false,
            dscp: Some(46),
            keyframe_interval: None,
        };
        assert_eq!(o.tos(), 0xb8);
    }

    #[test]
    fn a_keyframe_interval_of_its_own_is_a_number_of_ms_within_bounds() {
        let parse = |v: Value| {
            let given = json!({ KEYFRAME_INTERVAL_PARAM: v });
            CtorOptions::parse(&Map::new(), given.as_object().unwrap())
        };
        let none = CtorOptions::parse(&Map::new(), &Map::new()).unwrap();
        assert_eq!(none.keyframe_interval, None);
        assert_eq!(parse(Value::Null).unwrap().keyframe_interval, None);
        let one = parse(json!(1000)).unwrap().keyframe_interval;
        assert_eq!(one, Some(std::time::Duration::from_secs(1)));
        let min = parse(json!(300)).unwrap().keyframe_interval;
        assert_eq!(min, Some(std::time::Duration::from_millis(300)));
        let max = parse(json!(60_000)).unwrap().keyframe_interval;
        assert_eq!(max, Some(std::time::Duration::from_secs(60)));
        // An integral float is an int (jsoncpp's isInt, as KMS reads it).
        let float = parse(json!(1000.0)).unwrap().keyframe_interval;
        assert_eq!(float, Some(std::time::Duration::from_secs(1)));
        // An int out of range: 40107 (below the media router's 300 ms included).
        for bad in [json!(0), json!(100), json!(299), json!(60_001), json!(-5)] {
            let e = parse(bad.clone()).unwrap_err();
            assert_eq!(e.code, ErrorCode::MediaObjectIllegalParamError, "{bad}");
            assert!(e.message.contains(KEYFRAME_INTERVAL_PARAM), "{}", e.message);
        }
        // Not an int: 40001, worded as the model's checks (and KMS) word it.
        let not_int = [
            json!("1000"),
            json!(1.5),
            json!(true),
            json!([1000]),
            json!(3_000_000_000u64),
            json!(1e12),
        ];
        for bad in not_int {
            let e = parse(bad.clone()).unwrap_err();
            assert_eq!(e.code, ErrorCode::MarshallError, "{bad}");
            assert_eq!(
                e.message, "'fluoKeyframeInterval' parameter should be a int",
                "{bad}"
            );
        }
    }

    #[test]
    fn remb_on_connect_bounds_the_first_remb_and_is_lifted_when_nothing_limits() {
        let mut none = RembStart::default();
        assert_eq!(
            none.target(None, None, true),
            None,
            "unset: nothing is sent"
        );
        let on = Some(150_000);
        let mut s = RembStart::default();
        assert_eq!(s.target(on, None, true), Some(150_000));
        assert_eq!(s.target(on, None, false), Some(REMB_UNBOUNDED));
        assert_eq!(s.target(on, None, false), None, "lifted once");
        let mut s = RembStart::default();
        assert_eq!(s.target(on, Some(90_000), true), Some(90_000));
        assert_eq!(s.target(on, Some(800_000), false), Some(800_000));
        assert_eq!(
            s.target(on, None, false),
            None,
            "a viewer's REMB replaced the bound"
        );
    }

    #[test]
    fn remb_params_accept_defaults_and_refuse_estimator_tuning() {
        let ok = json!({"rembOnConnect": 150000, "upLosses": 12, "exponentialFactor": 0.04});
        assert_eq!(remb_on_connect(&ok).unwrap(), 150_000);
        assert_eq!(
            remb_on_connect(&json!({})).unwrap(),
            DEFAULT_REMB_ON_CONNECT
        );
        let e = remb_on_connect(&json!({"upLosses": 30})).unwrap_err();
        assert_eq!(e.code, ErrorCode::NotImplemented);
        assert!(e.message.contains("upLosses"), "{}", e.message);
        assert!(remb_on_connect(&json!({"linealFactorMin": 5})).is_err());
        assert!(remb_on_connect(&json!({"rembOnConnect": 0})).is_err());
    }
}
