//! The rate the viewer acknowledged, as goog_cc measures it from the feedback: the window of
//! each viewer's throughput estimator (docs/simulcast.md, "Cost"), and the bound it puts on
//! the loss-based estimator's climb (docs/simulcast.md, "Measured with Chromium").
//!
//! goog_cc 0.1.4 defaults to its robust estimator (libwebrtc's default today) with a window of
//! at least 20 packets and 1 s, at most 500 packets; its insertion walks the whole window for
//! every packet the feedback reports: 8.3 k of the 15.3 k instructions the estimate added per
//! forwarded packet (callgrind). Fluo caps the window at 50 packets: 2.7 k, and the layer tests
//! (`simulcast_bwe`, `svc_bwe`) pass. The Bayesian estimator (libwebrtc's earlier default) was
//! cheaper still but read a 900 kbit/s link at about 200 kbit/s in `svc_bwe`.

use goog_cc::network_control::NetworkControllerConfig;

/// The most packets a viewer's robust throughput estimator keeps.
pub(crate) const WINDOW_PACKETS_MAX: usize = 50;

/// How far above the acknowledged rate goog_cc's loss-based estimator may raise its estimate
/// while it is limited by loss (libwebrtc's `BwRampupUpperBoundFactor`; goog_cc's default,
/// 10^6, is no bound). Without it a viewer that lost much at its start (its top layer, the
/// initial probe behind a small queue) and is then application limited (capped to a low
/// layer) climbs back by 30 % a step (a step every 300-600 ms), on no evidence, up to the delay-based
/// estimate, which may never have left the 1 Mbit/s start (e2e 89, Chromium behind tc's tbf
/// at 300 kbit/s: W receiving 110 kbit/s, its estimate 190 kbit/s at 7 s, then 248, 322, 418,
/// 544, 707, 919, 1000 kbit/s by 10.2 s, its delay-based estimate 1000 kbit/s throughout; the
/// cap then moved it to h and the expiry tried f). Bounded, it climbs to at most twice what the
/// viewer acknowledges (never lowered by the bound): a probe's padding counts in that (the
/// window is 50 packets, a probe cluster or so: [`WINDOW_PACKETS_MAX`]), so a probe that
/// crossed the link lets it climb behind the probe.
pub(crate) const LOSS_RAMPUP_ACKED_FACTOR: f64 = 2.0;

/// Sets the controller's acknowledged-rate estimator: goog_cc's robust one, its window capped
/// at [`WINDOW_PACKETS_MAX`] packets (its other settings goog_cc's own); and bounds the
/// loss-based estimator's climb by the acknowledged rate ([`LOSS_RAMPUP_ACKED_FACTOR`]).
pub(crate) fn configure(config: &mut NetworkControllerConfig) {
    config
        .field_trials
        .robust_throughput_estimator_settings
        .max_window_packets = WINDOW_PACKETS_MAX;
    let loss = &mut config.field_trials.loss_based_bwe_v2;
    loss.bw_rampup_upper_bound_factor = LOSS_RAMPUP_ACKED_FACTOR;
    // The same in a hold (goog_cc holds only with a hold duration factor, 0 by default).
    loss.bw_rampup_upper_bound_in_hold_factor = LOSS_RAMPUP_ACKED_FACTOR;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_viewers_controller_keeps_the_robust_estimator_with_a_window_of_at_most_50_packets() {
        let mut config = NetworkControllerConfig::default();
        let r = &config.field_trials.robust_throughput_estimator_settings;
        assert!(r.enabled, "goog_cc's default is the robust estimator");
        assert_eq!(r.max_window_packets, 500, "goog_cc's default window");
        configure(&mut config);
        let r = &config.field_trials.robust_throughput_estimator_settings;
        assert!(r.enabled);
        assert_eq!(r.max_window_packets, WINDOW_PACKETS_MAX);
        // What goog_cc checks of the settings holds (its window at least its minimum).
        assert!(r.window_packets <= r.max_window_packets);
        assert!(r.required_packets <= r.window_packets);
    }

    #[test]
    fn the_loss_based_estimators_climb_is_bounded_by_twice_the_acknowledged_rate() {
        let mut config = NetworkControllerConfig::default();
        let l = &config.field_trials.loss_based_bwe_v2;
        assert!(
            l.enabled,
            "goog_cc's default is the loss-based estimator v2"
        );
        assert!(
            l.bw_rampup_upper_bound_factor >= 1e6,
            "goog_cc's default: no bound"
        );
        configure(&mut config);
        let l = &config.field_trials.loss_based_bwe_v2;
        assert_eq!(l.bw_rampup_upper_bound_factor, LOSS_RAMPUP_ACKED_FACTOR);
        assert_eq!(
            l.bw_rampup_upper_bound_in_hold_factor,
            LOSS_RAMPUP_ACKED_FACTOR
        );
        // goog_cc disables the estimator altogether on a setting it finds invalid.
        assert!(l.is_valid());
    }
}
