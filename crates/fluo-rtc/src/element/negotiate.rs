//! Offer and answer of a WebRtcEndpoint.
//!
//! **m-sections**: an offer's sections str0m cannot take (plain `RTP/AVP` and the like) are
//! rejected in the answer as KMS does (see `sections`); an offer with nothing usable gets an
//! answer with every section rejected, and the endpoint is negotiated (a later offer is refused,
//! as KMS refuses a second one). Without `useDataChannels` the data-channel section is
//! rejected the same way, as KMS does.

use super::{sdp_err, WebRtcEndpoint};
use crate::core::{lock, Ep};
use crate::sdp::unify_msid;
use crate::sections::Offer;
use fluo_api::{ErrorCode, KurentoError};
use serde_json::Value;
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{Direction, MediaKind};

impl WebRtcEndpoint {
    fn already_negotiated(ep: &Ep) -> Result<(), KurentoError> {
        if ep.negotiated || ep.pending_offer.is_some() {
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
        crate::sdp::check_payload_types(&usable)
            .map_err(|e| sdp_err(ErrorCode::SdpParseError, "Cannot use the SDP offer", e))?;
        let parsed = SdpOffer::from_sdp_string(&crate::sdp::without_egress_feedback(&usable))
            .map_err(|e| sdp_err(ErrorCode::SdpParseError, "Cannot parse the SDP offer", e))?;
        let ep_ref = self.ep.clone();
        let prepared = self.prepare_candidates();
        let mut ep = lock(&ep_ref);
        self.add_candidates(&mut ep, prepared);
        self.permit(offer.lines());
        let answer = ep.rtc.sdp_api().accept_offer(parsed).map_err(|e| {
            sdp_err(
                ErrorCode::SdpEndPointProcessOfferError,
                "Cannot process the SDP offer",
                e,
            )
        })?;
        let answer = sections.answer(Some(&unify_msid(&answer.to_sdp_string())));
        ep.negotiated = true;
        ep.remote_sdp = Some(offer.to_string());
        ep.local_sdp = Some(answer.clone());
        ep.learn_mids();
        for c in std::mem::take(&mut ep.early_candidates) {
            ep.rtc.add_remote_candidate(c);
        }
        drop(ep);
        self.wake();
        Ok(Value::from(answer))
    }

    /// An offer without a section a WebRtcEndpoint can take: answered, as KMS does, with every
    /// section rejected; the descriptions are kept and no media will flow.
    fn reject_all(&mut self, offer: &str, sections: &Offer<'_>) -> Value {
        let answer = sections.answer(None);
        let mut ep = lock(&self.ep);
        tracing::info!(id = %ep.id, rejected = sections.rejected(), "an offer without a section a WebRtcEndpoint can take (UDP/TLS/RTP/SAVPF or SCTP): every section rejected");
        ep.negotiated = true;
        ep.remote_sdp = Some(offer.to_string());
        ep.local_sdp = Some(answer.clone());
        ep.learn_mids();
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
        let prepared = self.prepare_candidates();
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
        let text = unify_msid(&offer.to_sdp_string());
        ep.pending_offer = Some(pending);
        ep.local_sdp = Some(text.clone());
        ep.learn_mids();
        Ok(Value::from(text))
    }

    pub(super) fn process_answer(&mut self, answer: &str) -> Result<Value, KurentoError> {
        crate::sdp::check_payload_types(answer)
            .map_err(|e| sdp_err(ErrorCode::SdpParseError, "Cannot use the SDP answer", e))?;
        let parsed = SdpAnswer::from_sdp_string(answer)
            .map_err(|e| sdp_err(ErrorCode::SdpParseError, "Cannot parse the SDP answer", e))?;
        let ep_ref = self.ep.clone();
        let mut ep = lock(&ep_ref);
        let Some(pending) = ep.pending_offer.take() else {
            return Err(KurentoError::new(
                if ep.negotiated {
                    ErrorCode::SdpEndPointAnswerAlreadyProcessed
                } else {
                    ErrorCode::SdpEndPointNotOfferGenerated
                },
                "processAnswer needs an offer from generateOffer first",
            ));
        };
        ep.rtc
            .sdp_api()
            .accept_answer(pending, parsed)
            .map_err(|e| {
                sdp_err(
                    ErrorCode::SdpEndPointProcessAnswerError,
                    "Cannot process the SDP answer",
                    e,
                )
            })?;
        ep.negotiated = true;
        ep.remote_sdp = Some(answer.to_string());
        self.permit(answer.lines());
        for c in std::mem::take(&mut ep.early_candidates) {
            ep.rtc.add_remote_candidate(c);
        }
        let local = ep.local_sdp.clone().unwrap_or_default();
        drop(ep);
        self.wake();
        Ok(Value::from(local))
    }
}
