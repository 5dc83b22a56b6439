//! `fluotestcrash` (feature `test-elements`, never in a release build): a GStreamer element
//! that stands for a plugin crashing in its constructor. It passes buffers through (an
//! `identity` inside, ghost pads `sink` and `src`); set to `abort=true` (in a
//! GStreamerFilter's command: `fluotestcrash abort=true`), it aborts the process that makes
//! it. The test-elements build's filter policy allows it; the server registers it too,
//! because the policy reads its class's property specs (no element is made for that).
#![allow(unsafe_code)] // glib::object_subclass expands to unsafe impls

use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;

/// The element's factory name.
pub const FACTORY: &str = "fluotestcrash";

mod imp {
    use super::{glib, gst};
    use gstreamer::prelude::*;
    use gstreamer::subclass::prelude::*;
    use std::sync::LazyLock;

    #[derive(Default)]
    pub struct TestCrash;

    #[glib::object_subclass]
    impl ObjectSubclass for TestCrash {
        const NAME: &'static str = "FluoTestCrashElement";
        type Type = super::TestCrashElement;
        type ParentType = gst::Bin;
    }

    impl ObjectImpl for TestCrash {
        fn properties() -> &'static [glib::ParamSpec] {
            static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
                vec![glib::ParamSpecBoolean::builder("abort")
                    .nick("Abort")
                    .blurb("Abort the process when set to true (a test of crash containment)")
                    .build()]
            });
            PROPS.as_ref()
        }

        fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
            if pspec.name() == "abort" && value.get::<bool>().unwrap_or(false) {
                tracing::warn!("fluotestcrash: abort=true, aborting this process (a test)");
                std::process::abort();
            }
        }

        fn property(&self, _id: usize, _pspec: &glib::ParamSpec) -> glib::Value {
            false.to_value()
        }

        fn constructed(&self) {
            self.parent_constructed();
            let obj = self.obj();
            let Ok(identity) = gst::ElementFactory::make("identity").build() else {
                tracing::warn!("fluotestcrash: no identity element");
                return;
            };
            if obj.add(&identity).is_err() {
                return;
            }
            for name in ["sink", "src"] {
                let ghost = identity
                    .static_pad(name)
                    .and_then(|p| gst::GhostPad::with_target(&p).ok());
                if let Some(g) = ghost {
                    let _ = obj.add_pad(&g);
                }
            }
        }
    }

    impl GstObjectImpl for TestCrash {}

    impl ElementImpl for TestCrash {
        fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
            static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
                gst::subclass::ElementMetadata::new(
                    "Fluo test crash",
                    "Filter",
                    "Passes buffers through; aborts the process with abort=true (tests only)",
                    "Fluo",
                )
            });
            Some(&META)
        }
    }

    impl BinImpl for TestCrash {}
}

glib::wrapper! {
    /// The `fluotestcrash` element.
    pub struct TestCrashElement(ObjectSubclass<imp::TestCrash>)
        @extends gst::Bin, gst::Element, gst::Object,
        @implements gst::ChildProxy;
}

/// Registers `fluotestcrash` in this process (GStreamer initialised).
pub(crate) fn register() -> Result<(), String> {
    gst::Element::register(
        None,
        FACTORY,
        gst::Rank::NONE,
        TestCrashElement::static_type(),
    )
    .map_err(|e| format!("fluotestcrash cannot be registered: {e}"))
}
