//! GStreamerFilter's policy without a server: commands that write or read files are refused
//! before any element exists (facedetect's constructor would abort this process), the
//! commands Kurento users write are built, the operator's list extends the built-in one, and
//! random commands made of every installed factory never get through with a property that
//! can name a path.

use fluo_gst::fuzzing::{gst_filter_build, gst_filter_check};
use gstreamer as gst;
use gstreamer::prelude::*;

fn list(v: &[&str]) -> Option<Vec<String>> {
    Some(v.iter().map(|s| s.to_string()).collect())
}

#[test]
fn commands_that_touch_files_are_refused_naming_the_element_and_property() {
    for (command, element, property) in [
        (
            "queue2 temp-template=/tmp/fluo-policy-XXXXXX temp-remove=false",
            "queue2",
            "temp-template",
        ),
        (
            "videoconvert ! motioncells datafile=/tmp/fluo-policy-x datafileextension=y ! videoconvert",
            "motioncells",
            "datafile",
        ),
        // Parsing this with GStreamer's parser aborts the process (OpenCV throws in the
        // property setter): the check must not create the element.
        ("facedetect profile=/etc/hostname", "facedetect", "profile"),
        ("videoconvert ! facedetect eyes-profile=/etc/hostname", "facedetect", "eyes-profile"),
        ("faceblur profile=/etc/hostname", "faceblur", "profile"),
    ] {
        let e = gst_filter_check(None, command).expect_err(command);
        assert!(
            e.contains(element) && e.contains(property),
            "{command:?}: the error names {element} and {property}: {e}"
        );
        println!("refused {command:?}: {e}");
    }
    // Operator-listed factories keep their path properties out of reach unless the pair is
    // listed too; setElementProperty goes through the same rule (tested with a server in
    // fluo-testkit's gst_filter).
    let extended = list(&["queue2", "motioncells"]);
    gst_filter_build(extended.clone(), "queue2 max-size-buffers=10").expect("listed queue2");
    let e = gst_filter_check(extended.clone(), "queue2 temp-template=/tmp/x").expect_err("pair");
    assert!(
        e.contains("temp-template") && e.contains("queue2.temp-template"),
        "{e}"
    );
    let e =
        gst_filter_check(extended, "videoconvert ! motioncells datafile=/tmp/x").expect_err("pair");
    assert!(e.contains("datafile"), "{e}");
    gst_filter_check(
        list(&["queue2.temp-template"]),
        "queue2 temp-template=/tmp/x",
    )
    .expect("a listed pair");
    assert!(!std::path::Path::new("/tmp/fluo-policy-x").exists());
}

#[test]
fn the_commands_kurento_users_write_are_built() {
    for command in [
        "videobalance saturation=0.0",
        "videoflip method=horizontal-flip",
        "videoflip method = vertical-flip",
        "capsfilter caps=video/x-raw,format=I420",
        "capsfilter caps=\"video/x-raw, width=(int)320\"",
        "videoconvert ! videoscale",
        "videoconvert ! videoscale ! video/x-raw,width=320,height=240 ! videoconvert",
        "videoconvert ! \"video/x-raw, format=I420\" ! videoflip",
        "audioecho delay=500000000 intensity=0.6 feedback=0.4",
        "volume volume=0.5",
        "textoverlay text=\"Hello from Fluo\" font-desc=\"Sans, 24\" valignment=top",
        "textoverlay text=Hello\\ world",
        "timeoverlay halignment=right",
        "clockoverlay time-format=\"%H:%M:%S\"",
        "coloreffects preset=sepia",
        "gamma gamma=2.0",
        "edgetv",
        "agingtv",
        "videoconvert ! facedetect display=true ! videoconvert",
        "queue max-size-buffers=30 ! videoconvert",
        "audioconvert ! audioresample ! volume volume=2.0",
        "videoconvert name=a ! videoflip name=b",
    ] {
        let bin = gst_filter_build(None, command).unwrap_or_else(|e| panic!("{command:?}: {e}"));
        assert!(bin.static_pad("sink").is_some() && bin.static_pad("src").is_some());
    }
    // The values are those the command gives, set as GStreamer's parser would.
    let bin = gst_filter_build(
        None,
        "textoverlay text=\"a \\\"quoted\\\" text\" ! videoflip method=clockwise",
    )
    .expect("built");
    let e = bin
        .iterate_elements()
        .into_iter()
        .flatten()
        .find(|e| e.factory().is_some_and(|f| f.name() == "textoverlay"));
    assert_eq!(
        e.expect("textoverlay").property::<String>("text"),
        "a \"quoted\" text"
    );
    // "*" hands the text to GStreamer's parser (KMS's behaviour).
    gst_filter_build(
        list(&["*"]),
        "videoflip ! tee name=t ! queue ! fakesink t. ! queue",
    )
    .expect("anything with *");
}

#[test]
fn syntax_the_policy_cannot_classify_is_refused() {
    for command in [
        "",
        "   ",
        "videoflip !",
        "! videoflip",
        "videoflip ! ! videoflip",
        "tee name=t t. ! queue",
        "( videoflip )",
        "bin.( videoflip )",
        "videoflip ! (",
        "file:///etc/passwd",
        "http://127.0.0.1:9/x",
        "videoflip method",
        "videoflip =x",
        "videoflip \"method\"=none",
        "videoflip method=\"none",
        "videoflip \\",
        "\"videoflip\"",
        "video/x-raw !",
        "videoflip ! ANY ! videoflip",
        "videoflip ! file:///x ! videoflip",
        "nosuchelement",
        "videoflip nosuchproperty=1",
        "videoflip method=sideways",
        "videobalance saturation=7",
        "videobalance saturation=",
        "videoflip method=",
        "videoflip name=x ! videoflip name=x",
        "videoflip parent=x",
        "filesrc location=/etc/passwd ! decodebin",
        "videoflip\u{1}",
    ] {
        let r = gst_filter_build(None, command);
        assert!(r.is_err(), "{command:?} was accepted");
    }
    // A bounded number of elements (each queue is a thread once playing).
    let chain = |n: usize| vec!["queue"; n].join(" ! ");
    gst_filter_build(None, &chain(64)).expect("64 elements");
    let e = gst_filter_build(None, &chain(65)).expect_err("65 elements");
    assert!(e.contains("at most 64"), "{e}");
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

/// Whether the test counts a property type as plain data (independently of the policy's
/// own list): everything else (strings, file names, URIs, objects, arrays) could name a path.
fn plain(t: glib::Type) -> bool {
    use glib::Type;
    t.is_a(Type::ENUM)
        || t.is_a(Type::FLAGS)
        || [
            Type::BOOL,
            Type::I8,
            Type::U8,
            Type::I32,
            Type::U32,
            Type::I_LONG,
            Type::U_LONG,
            Type::I64,
            Type::U64,
            Type::F32,
            Type::F64,
        ]
        .contains(&t)
        || t == gst::Caps::static_type()
        || t == gst::Fraction::static_type()
}

/// A value for `pspec` in a command: a path for anything that is not plain data, otherwise
/// its default (or, sometimes, junk).
fn value_for(rng: &mut Rng, pspec: &glib::ParamSpec) -> String {
    if rng.below(10) == 0 {
        // No file that exists (an element reading it must not get a file it cannot parse).
        return rng
            .pick(&["junk", "-1", "1e400", "\"\"", "/tmp/fluo-policy-fuzz/junk"])
            .to_string();
    }
    if !plain(pspec.value_type()) {
        // Never a file that exists: an element that reads it must not be able to abort.
        return rng
            .pick(&[
                "/tmp/fluo-policy-fuzz/none",
                "file:///tmp/fluo-policy-fuzz/none",
                "\"/tmp/fluo-policy-fuzz/a b\"",
            ])
            .to_string();
    }
    let v = pspec.default_value();
    match v.serialize() {
        Ok(s) if !s.is_empty() && !s.contains(char::is_whitespace) => s.to_string(),
        _ => "0".into(),
    }
}

#[test]
fn random_commands_of_every_installed_factory_never_set_a_path_property() {
    fluo_gst::fuzzing::gst_filter_check(None, "identity").expect("GStreamer starts");
    // A GLib CRITICAL (a value GStreamer's deserialisers choke on) ends this process.
    glib::log_set_always_fatal(glib::LogLevels::LEVEL_CRITICAL);
    let registry = gst::Registry::get();
    let mut factories: Vec<(String, Vec<glib::ParamSpec>)> = registry
        .features(gst::ElementFactory::static_type())
        .into_iter()
        .filter_map(|f| f.downcast::<gst::ElementFactory>().ok())
        .map(|f| {
            let name = f.name().to_string();
            let props = f
                .load()
                .ok()
                .and_then(|f| glib::Class::<gst::Element>::from_type(f.element_type()))
                .map(|c| {
                    c.list_properties()
                        .iter()
                        .filter(|p| p.flags().contains(glib::ParamFlags::WRITABLE))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            (name, props)
        })
        .collect();
    factories.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(
        factories.len() > 300,
        "{} factories installed",
        factories.len()
    );
    let allowed: Vec<&(String, Vec<glib::ParamSpec>)> = factories
        .iter()
        .filter(|(n, _)| fluo_gst::TRANSFORMS.contains(&n.as_str()))
        .collect();
    assert!(
        allowed.len() > 50,
        "{} listed transforms installed",
        allowed.len()
    );

    let cases: usize = std::env::var("FLUO_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let operator = ["queue2", "motioncells", "queue2.temp-template", "tee"];
    let (mut passed, mut refused) = (0usize, 0usize);
    let mut rng = Rng(0x5eed_f100_u64.wrapping_add(cases as u64) | 1);
    for case in 0..cases {
        let extended = case % 2 == 1;
        let allow = extended.then(|| operator.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let mut segs = vec![];
        for _ in 0..1 + rng.below(4) {
            let seg = match rng.below(20) {
                0 => rng
                    .pick(&[
                        "video/x-raw,format=I420",
                        "t.",
                        "(",
                        ")",
                        "file:///etc/passwd",
                        "tee name=t",
                        "\"videoflip\"",
                        "x.src",
                    ])
                    .to_string(),
                _ => {
                    let (name, props) = if rng.below(2) == 0 {
                        *rng.pick(&allowed)
                    } else {
                        rng.pick(&factories)
                    };
                    let mut s = name.clone();
                    for _ in 0..rng.below(4) {
                        if props.is_empty() {
                            break;
                        }
                        let p = rng.pick(props);
                        if p.name() == "name" {
                            continue;
                        }
                        s.push_str(&format!(" {}={}", p.name(), value_for(&mut rng, p)));
                    }
                    s
                }
            };
            segs.push(seg);
        }
        let command = segs.join(if rng.below(5) == 0 { "!" } else { " ! " });
        let Ok(bin) = gst_filter_build(allow.clone(), &command) else {
            refused += 1;
            continue;
        };
        passed += 1;
        for e in bin.iterate_recurse().into_iter().flatten() {
            let factory = e
                .factory()
                .map(|f| f.name().to_string())
                .unwrap_or_default();
            // What the element has when nobody sets anything.
            let fresh = gst::ElementFactory::make(&factory)
                .build()
                .expect("fresh element");
            assert!(
                fluo_gst::TRANSFORMS.contains(&factory.as_str())
                    || (extended && operator.contains(&factory.as_str())),
                "{command:?} let {factory} through"
            );
            for pspec in e.list_properties().iter() {
                let name = pspec.name();
                if plain(pspec.value_type())
                    || ["name", "parent"].contains(&name)
                    || !pspec.flags().contains(glib::ParamFlags::WRITABLE)
                    || fluo_gst::STRING_PAIRS.contains(&(factory.as_str(), name))
                    || (extended && operator.contains(&format!("{factory}.{name}").as_str()))
                {
                    continue;
                }
                let now = e.property_value(name);
                let default = fresh.property_value(name);
                let same = if pspec.value_type() == glib::Type::STRING {
                    now.get::<Option<String>>().ok() == default.get::<Option<String>>().ok()
                } else {
                    now.serialize().ok() == default.serialize().ok()
                };
                assert!(
                    same,
                    "{command:?}: {factory}'s {name} ({}) was set to {:?}",
                    pspec.value_type(),
                    now.serialize()
                );
            }
        }
    }
    println!("{cases} random commands: {passed} built, {refused} refused");
    assert!(
        passed >= cases / 20,
        "only {passed} of {cases} passed: the test tests little"
    );
    assert!(refused >= cases / 4, "only {refused} of {cases} refused");
}

/// What `make gst-filter-sweep` found (docs/gst-filter-sweep.md): in-range values of the
/// default list's factories that abort the process (OpenCV assertions), allocate gigabytes,
/// hang or dump every buffer to stdout. Each is refused at create and by setElementProperty,
/// with a text naming the element, the property and what is allowed.
const DANGEROUS: &[(&str, &str, &str)] = &[
    ("cvdilate", "iterations", "100000"),
    ("cvdilate", "iterations", "2147483647"),
    ("cverode", "iterations", "100000"),
    ("cverode", "iterations", "2147483646"),
    ("cvsmooth", "kernel-width", "2147483647"),
    ("cvsmooth", "kernel-height", "2147483647"),
    ("cvsmooth", "type", "blur"),
    ("cvsmooth", "type", "median"),
    ("cvsmooth", "type", "bilateral"),
    ("edgedetect", "aperture", "4"),
    ("edgedetect", "aperture", "6"),
    ("identity", "dump", "true"),
    ("identity", "sleep-time", "4294967294"),
    ("identity", "sleep-time", "4294967295"),
    ("retinex", "sigma", "1e9"),
    ("retinex", "sigma", "1e308"),
    ("smooth", "filter-size", "-2147483647"),
    ("smooth", "filter-size", "1000"),
    ("smooth", "filter-size", "100000"),
    ("spectrum", "bands", "1073741823"),
    ("spectrum", "bands", "1073741824"),
    ("videorate", "rate", "0"),
    ("videorate", "rate", "1e308"),
];

#[test]
fn values_the_sweep_found_dangerous_are_refused_at_create_and_by_set_element_property() {
    for &(factory, property, value) in DANGEROUS {
        let command = format!("{factory} {property}={value}");
        let e = gst_filter_check(None, &command).expect_err(&command);
        assert!(
            e.contains(factory) && e.contains(property),
            "{command:?}: the error names {factory} and {property}: {e}"
        );
        println!("refused {command:?}: {e}");
        // setElementProperty on a filter made of the factory alone.
        let e = fluo_gst::fuzzing::gst_filter_property(None, factory, property, value)
            .expect_err(&command);
        assert!(
            e.contains(factory) && e.contains(property),
            "{command:?}: {e}"
        );
    }
    // Together, x-order=0 y-order=0 abort the process whatever the bounds: cvsobel is off the
    // default list, as are faceblur and handdetect (their default cascades do not load).
    for command in [
        "cvsobel x-order=0 y-order=0",
        "cvsobel x-order=-1 y-order=1",
        "faceblur",
        "handdetect",
    ] {
        let e = gst_filter_check(None, command).expect_err(command);
        assert!(e.contains("--gst-filter-allow"), "{command:?}: {e}");
    }
    gst_filter_check(list(&["cvsobel"]), "cvsobel x-order=1 y-order=1").expect("listed");
    // Every bound's edges are allowed (the sweep ran them); an operator-listed pair lifts it.
    for b in fluo_gst::BOUNDS {
        if !fluo_gst::TRANSFORMS.contains(&b.factory) {
            continue;
        }
        for x in [b.min, b.max] {
            let v = match b.property {
                "dump" => "false".to_string(),
                "type" => if x == 1.0 { "blur" } else { "gaussian" }.to_string(),
                _ => format!("{x}"),
            };
            let command = format!("{} {}={v}", b.factory, b.property);
            gst_filter_check(None, &command).unwrap_or_else(|e| panic!("{command:?}: {e}"));
            assert_eq!(
                fluo_gst::fuzzing::gst_filter_property(None, b.factory, b.property, &v),
                Ok(1),
                "{command:?}"
            );
        }
    }
    gst_filter_check(
        list(&["identity.sleep-time"]),
        "identity sleep-time=1000000",
    )
    .expect("the operator lifts a bound");
    // A bound names the allowed range.
    let e = gst_filter_check(None, "videoconvert ! edgedetect aperture=4").expect_err("4");
    assert!(e.contains("odd values from 3 to 7"), "{e}");
}

#[test]
fn fluo_s_own_element_names_are_refused() {
    for name in fluo_gst::RESERVED_NAMES {
        let command = format!("videoconvert ! videoflip name={name}");
        let e = gst_filter_check(None, &command).expect_err(&command);
        assert!(e.contains(name) && e.contains("reserved"), "{e}");
    }
    gst_filter_build(None, "videoflip name=preview").expect("another name");
}
