//! The rate the viewer acknowledged, as goog_cc measures it from the feedback: which of its two
//! throughput estimators each viewer's controller uses (docs/simulcast.md, "Cost").
//!
//! goog_cc 0.1.4 defaults to its robust estimator (libwebrtc's default today), whose window
//! insertion walks the whole window, a second of packets, for every packet the feedback reports:
//! 8.3 k of the 15.3 k instructions the estimate added per forwarded packet (callgrind). Fluo
//! uses the Bayesian estimator instead (libwebrtc's earlier default): constant work per packet,
//! 19.95 k instructions per forwarded packet in all against 28.26 k, and the layer tests
//! (`simulcast_bwe`, `svc_bwe`) pass with it as with the robust one.

use goog_cc::network_control::NetworkControllerConfig;

/// Sets the controller's acknowledged-rate estimator: the Bayesian one, with goog_cc's default
/// windows (samples of 150 ms; a longer one for the first).
pub(crate) fn configure(config: &mut NetworkControllerConfig) {
    config
        .field_trials
        .robust_throughput_estimator_settings
        .enabled = false;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_viewers_controller_measures_the_acknowledged_rate_with_the_bayesian_estimator() {
        let mut config = NetworkControllerConfig::default();
        assert!(
            (config.field_trials.robust_throughput_estimator_settings).enabled,
            "goog_cc's default is the robust estimator"
        );
        configure(&mut config);
        let t = &config.field_trials;
        assert!(!t.robust_throughput_estimator_settings.enabled);
        // The Bayesian estimator's windows are goog_cc's own.
        let w = &t.bwe_throughput_window_config;
        assert_eq!((w.initial_window_ms, w.window_ms), (500, 150));
    }
}
