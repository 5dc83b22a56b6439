//! Offer and answer of a WebRtcEndpoint, and how it takes part in ICE.
//!
//! **m-sections**: an offer's sections str0m cannot take (plain `RTP/AVP` and the like) are
//! rejected in the answer as KMS does (see `sections`); an offer with nothing usable gets an
//! answer with every section rejected, and the endpoint is negotiated (a later offer is refused,
//! as KMS refuses a second one).
//!
//! **ICE-lite or full ICE.** An endpoint starts as ICE-lite: it answers the peer's checks and
//! follows its nomination, which is all a browser (always a full agent) needs. RFC 8445 §6.1.1:
//! a full agent facing a lite one is controlling; two full agents, the offerer is; two lite
//! agents cannot check at all. So an endpoint runs full ICE, with its own paced checks,
//! nomination and consent refresh (str0m's agent with ice-lite off), when:
//!
//! - its peer announced `a=ice-lite` (another Fluo endpoint, mediasoup, Janus in lite mode):
//!   answering such an offer it is the controlling agent and its answer announces no
//!   `a=ice-lite`; getting such an answer to its own (lite) offer, it turns full and
//!   controlling then (both announced lite: the offerer controls);
//! - it has TURN-relayed candidates: a relayed address only passes what the TURN server lets
//!   through, so the endpoint sends its own checks through the allocation (announced `typ
//!   relay`); its role follows the offer/answer (controlling when it offers).
//!
//! KMS (libnice) always runs full ICE, so Fluo facing KMS is the lite side either way; a
//! browser facing Fluo is the full, controlling side, as before.
//!
//! **Sockets.** A full endpoint answering an ICE-lite peer binds UDP sockets of its own (one per
//! address family of the media sockets) and announces only those: every Fluo endpoint of a
//! server shares one socket per address, so two sessions between the same two Fluo servers
//! would otherwise share one pair of addresses, and their DTLS and media could not be told
//! apart. The sockets close with the endpoint.

use super::WebRtcEndpoint;
use crate::core::{lock, Control, Ctl, Ep};
use crate::sdp::{is_ice_lite, unify_msid, without_ice_lite};
use crate::sections::Offer;
use fluo_api::{ErrorCode, KurentoError};
use serde_json::Value;
use str0m::media::{Direction, MediaKind};

impl WebRtcEndpoint {
    /// The session runs full ICE from now on.
    pub(super) fn full_ice(&mut self, ep: &mut Ep) {
        if !std::mem::replace(&mut self.full_ice, true) {
            ep.rtc.direct_api().set_ice_lite(false);
            tracing::debug!(id = %ep.id, "full ICE");
        }
    }

    /// Our description as sent: one media stream id, and no `a=ice-lite` when the endpoint
    /// runs full ICE.
    fn written(&self, sdp: &str) -> String {
        let sdp = unify_msid(sdp);
        if self.full_ice {
            without_ice_lite(sdp)
        } else {
            sdp
        }
    }

    fn already_negotiated(ep: &Ep) -> Result<(), KurentoError> {
        if ep.sdp.started() {
            return Err(KurentoError::new(
                ErrorCode::SdpEndPointAlreadyNegotiated,
                "This endpoint has already negotiated a session",
            ));
        }
        Ok(())
    }

    pub(super) fn process_offer(&mut self, offer: &str) -> Result<Value, KurentoError> {
        Self::already_negotiated(&lock(&self.ep))?;
        // Sections it does not take (other transports; without useDataChannels, as KMS, the
        // data-channel one) are rejected in the answer.
        let sections = Offer::new(offer, self.options.data_channels);
        if sections.rejected() > 0 && !sections.has_usable() {
            return Ok(self.reject_all(offer, &sections));
        }
        let usable = sections.usable(offer);
        // What str0m reads (rejected sections never reach it).
        let parsed =
            crate::sdp::parse_offer(offer, &usable, self.rtc.bwe.keeps_twcc()).map_err(|e| {
                KurentoError::new(
                    ErrorCode::SdpParseError,
                    format!("Cannot parse the SDP offer: {e}"),
                )
            })?;
        let ep_ref = self.ep.clone();
        let prepared = self.prepare_candidates(is_ice_lite(&usable));
        let mut ep = lock(&ep_ref);
        if is_ice_lite(&usable) {
            self.full_ice(&mut ep);
        }
        self.add_candidates(&mut ep, prepared);
        self.permit(offer.lines());
        crate::pair::remember(&mut ep, offer.lines());
        let answer = ep.rtc.sdp_api().accept_offer(parsed).map_err(|e| {
            KurentoError::foreign(
                ErrorCode::SdpEndPointProcessOfferError,
                "Cannot process the SDP offer",
                e,
            )
        })?;
        let answer = sections.answer(Some(&self.written(&answer.to_sdp_string())));
        let early = ep.sdp.answered(offer, &answer);
        ep.learn_mids();
        for c in early {
            ep.rtc.add_remote_candidate(c);
        }
        drop(ep);
        self.negotiated();
        Ok(Value::from(answer))
    }

    /// An ICE restart the peer asked for outside an offer (a WHIP/WHEP PATCH, RFC 9725 4.3.2):
    /// its offer again, with its new credentials and without the old session's candidates,
    /// through str0m's renegotiation, which restarts ICE on other credentials (the peer's
    /// differ) with new local ones and the local candidates kept. DTLS and the media streams go
    /// on; the answer is the new local description.
    ///
    /// Errors: `SdpEndPointProcessOfferError` when nothing changed (the ICE session goes on);
    /// `UnexpectedError` when str0m had restarted ICE before a later step of its renegotiation
    /// failed: the peer's ICE session is gone and no answer tells it the new one (lost).
    pub(super) fn restart_ice(&mut self, ufrag: &str, pwd: &str) -> Result<String, KurentoError> {
        let failed = |e: &dyn std::fmt::Display| {
            KurentoError::new(
                ErrorCode::SdpEndPointProcessOfferError,
                format!("Cannot restart ICE: {e}"),
            )
        };
        let ep_ref = self.ep.clone();
        let mut ep = lock(&ep_ref);
        let Some(offer) = ep.sdp.answered_offer() else {
            return Err(failed(&"no offer was answered"));
        };
        let offer = crate::sdp::with_ice_credentials(offer, ufrag, pwd);
        let sections = Offer::new(&offer, self.options.data_channels);
        if !sections.has_usable() {
            return Err(failed(&"the session has no media section"));
        }
        let usable = sections.usable(&offer);
        let parsed = crate::sdp::parse_offer(&offer, &usable, self.rtc.bwe.keeps_twcc())
            .map_err(|e| failed(&e))?;
        let old = ep.rtc.direct_api().local_ice_credentials().ufrag;
        let accepted = ep.rtc.sdp_api().accept_offer(parsed);
        let new = ep.rtc.direct_api().local_ice_credentials().ufrag;
        let answer = match accepted {
            Ok(answer) => answer,
            Err(e) if new == old => return Err(failed(&e)),
            Err(e) => {
                // str0m restarts ICE (new local credentials, the peer's candidates dropped)
                // before the steps that can still fail: that ICE session is the endpoint's
                // now, though no answer announces it.
                tracing::warn!(id = %ep.id, "an ICE restart failed after ICE was restarted: the ICE session is lost: {e}");
                crate::pair::forget_remote(&mut ep);
                drop(ep);
                self.remote_candidates = 0;
                self.ice_renewed(old, new);
                return Err(KurentoError::new(
                    ErrorCode::UnexpectedError,
                    format!("ICE was restarted, then the restart failed: {e}"),
                ));
            }
        };
        let answer = sections.answer(Some(&self.written(&answer.to_sdp_string())));
        ep.sdp.restarted(offer, answer.clone());
        ep.ice_restarted = ep.was_connected;
        ep.nominated = None;
        crate::pair::forget_remote(&mut ep);
        drop(ep);
        self.remote_candidates = 0;
        self.ice_renewed(old, new);
        Ok(answer)
    }

    /// str0m's ICE session has new local credentials: the media core knows the endpoint by
    /// its new ufrag.
    fn ice_renewed(&self, old: String, ufrag: String) {
        let key = self.key;
        let _ = (self.rtc.ctl).send(Control(Ctl::IceRestarted { key, old, ufrag }));
    }

    /// An offer without a section a WebRtcEndpoint can take: answered, as KMS does, with every
    /// section rejected; the descriptions are kept and no media will flow.
    fn reject_all(&mut self, offer: &str, sections: &Offer<'_>) -> Value {
        let answer = sections.answer(None);
        let mut ep = lock(&self.ep);
        tracing::info!(id = %ep.id, rejected = sections.rejected(), "an offer without a section a WebRtcEndpoint can take (UDP/TLS/RTP/SAVPF or SCTP): every section rejected");
        // Nothing negotiated: no candidate of the peer's is of use.
        let _ = ep.sdp.answered(offer, &answer);
        ep.learn_mids();
        drop(ep);
        self.negotiated();
        Value::from(answer)
    }

    pub(super) fn generate_offer(
        &mut self,
        options: Option<&Value>,
    ) -> Result<Value, KurentoError> {
        let want = |k: &str| {
            options
                .and_then(|o| o.get(k))
                .and_then(Value::as_bool)
                .unwrap_or(true)
        };
        Self::already_negotiated(&lock(&self.ep))?;
        let ep_ref = self.ep.clone();
        let prepared = self.prepare_candidates(false);
        let mut ep = lock(&ep_ref);
        self.add_candidates(&mut ep, prepared);
        let mut api = ep.rtc.sdp_api();
        for (kind, receive) in [
            (MediaKind::Audio, want("offerToReceiveAudio")),
            (MediaKind::Video, want("offerToReceiveVideo")),
        ] {
            let dir = match (self.direction, receive) {
                (Direction::SendRecv, true) => Direction::SendRecv,
                (Direction::SendRecv, false) | (Direction::SendOnly, _) => Direction::SendOnly,
                _ => Direction::RecvOnly,
            };
            api.add_media(kind, dir, None, None, None);
        }
        let Some((offer, pending)) = api.apply() else {
            return Err(KurentoError::new(
                ErrorCode::SdpEndPointGenerateOfferError,
                "Nothing to offer",
            ));
        };
        let text = self.written(&offer.to_sdp_string());
        ep.sdp.offered(pending, &text);
        ep.learn_mids();
        Ok(Value::from(text))
    }

    pub(super) fn process_answer(&mut self, answer: &str) -> Result<Value, KurentoError> {
        let parsed = crate::sdp::parse_answer(answer).map_err(|e| {
            KurentoError::new(
                ErrorCode::SdpParseError,
                format!("Cannot parse the SDP answer: {e}"),
            )
        })?;
        let ep_ref = self.ep.clone();
        let mut ep = lock(&ep_ref);
        let Some(pending) = ep.sdp.take_pending() else {
            return Err(KurentoError::new(
                if ep.sdp.is_done() {
                    ErrorCode::SdpEndPointAnswerAlreadyProcessed
                } else {
                    ErrorCode::SdpEndPointNotOfferGenerated
                },
                "processAnswer needs an offer from generateOffer first",
            ));
        };
        if is_ice_lite(answer) && !self.full_ice {
            // Both sides announced ICE-lite: the offerer (this endpoint) turns full and
            // controlling, as RFC 8445 §6.1.1 has the initiating agent control.
            self.full_ice(&mut ep);
            ep.rtc.direct_api().set_ice_controlling(true);
        }
        ep.rtc
            .sdp_api()
            .accept_answer(pending, parsed)
            .map_err(|e| {
                KurentoError::foreign(
                    ErrorCode::SdpEndPointProcessAnswerError,
                    "Cannot process the SDP answer",
                    e,
                )
            })?;
        let early = ep.sdp.answer_applied(answer);
        self.permit(answer.lines());
        crate::pair::remember(&mut ep, answer.lines());
        for c in early {
            ep.rtc.add_remote_candidate(c);
        }
        let local = ep.sdp.local().unwrap_or_default().to_string();
        drop(ep);
        self.negotiated();
        Ok(Value::from(local))
    }
}

#[cfg(test)]
mod tests {
    use super::super::WebRtcFactory;
    use crate::core::{lock, Control, Ctl};
    use crate::WebRtc;
    use fluo_api::ErrorCode;
    use fluo_core::FactoryCx;
    use serde_json::Map;
    use str0m::media::{Direction, MediaKind};

    /// A peer's offer of audio and video.
    fn offer() -> String {
        let mut peer = str0m::Rtc::new(std::time::Instant::now());
        let mut api = peer.sdp_api();
        api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        api.add_media(MediaKind::Video, Direction::SendRecv, None, None, None);
        api.apply().expect("an offer").0.to_sdp_string()
    }

    /// The same SDP with its two m-sections the other way round.
    fn swapped(sdp: &str) -> String {
        let mut parts: Vec<&str> = sdp.split("m=").collect();
        assert_eq!(parts.len(), 3, "{sdp}");
        parts.swap(1, 2);
        parts.join("m=")
    }

    fn restarts(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Control>) -> Vec<(String, String)> {
        let mut got = vec![];
        while let Ok(Control(c)) = rx.try_recv() {
            if let Ctl::IceRestarted { old, ufrag, .. } = c {
                got.push((old, ufrag));
            }
        }
        got
    }

    #[test]
    fn a_restart_that_fails_after_str0m_restarted_ice_reports_the_session_lost() {
        let (rtc, mut rx) = WebRtc::in_memory(vec!["127.0.0.1:40000".parse().unwrap()]);
        let params = Map::new();
        let cx = FactoryCx {
            id: "ep",
            pipeline: Some("pipe"),
            params: &params,
            given: &params,
        };
        let mut ep = WebRtcFactory { rtc }.endpoint(&cx).unwrap();
        let offer = offer();
        ep.process_offer(&offer).expect("the offer answered");
        let ufrag = |ep: &super::WebRtcEndpoint| {
            let mut e = lock(&ep.ep);
            e.rtc.direct_api().local_ice_credentials().ufrag
        };
        let first = ufrag(&ep);
        assert!(restarts(&mut rx).is_empty());

        // A restart: new local credentials, announced to the media core.
        let answer = ep
            .restart_ice("ZZy2", "w9dGRB0Tn/HZuuOxCUJYqS+x")
            .expect("restarted");
        let second = ufrag(&ep);
        assert_ne!(second, first);
        assert!(
            answer.contains(&format!("a=ice-ufrag:{second}")),
            "{answer}"
        );
        assert_eq!(restarts(&mut rx), [(first, second.clone())]);

        // A restart str0m refuses before it touches ICE (here: both sides ICE-lite, which it
        // checks first): nothing changed.
        let stored = |ep: &super::WebRtcEndpoint, f: &dyn Fn(&str) -> String| {
            let mut e = lock(&ep.ep);
            let remote = f(e.sdp.answered_offer().unwrap());
            let local = e.sdp.local().unwrap_or_default().to_string();
            e.sdp.restarted(remote, local);
        };
        let remote = lock(&ep.ep).sdp.answered_offer().unwrap().to_string();
        stored(&ep, &|o| {
            o.replacen("t=0 0\r\n", "t=0 0\r\na=ice-lite\r\n", 1)
        });
        let err = ep
            .restart_ice("Xxx3", "q8cFRB0Tn/HZuuOxCUJYqS+x")
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::SdpEndPointProcessOfferError, "{err:?}");
        assert_eq!(ufrag(&ep), second);
        assert!(restarts(&mut rx).is_empty());

        // One that fails after str0m restarted ICE (here: the sections moved, which str0m
        // finds only once it applies the offer): lost, and the media core learns the new
        // ufrag all the same.
        stored(&ep, &|_| swapped(&remote));
        let err = ep
            .restart_ice("Yyy3", "q8cFRB0Tn/HZuuOxCUJYqS+x")
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::UnexpectedError, "{err:?}");
        let third = ufrag(&ep);
        assert_ne!(third, second, "str0m did restart ICE");
        assert_eq!(restarts(&mut rx), [(second, third)]);
    }
}
