//! Which GStreamerFilter commands run, and how they are built.
//!
//! Default-deny: a command is a chain of elements and caps linked with `!`, every element a
//! factory of [`TRANSFORMS`] (pure transforms of raw media: converters, scalers, effects,
//! overlays, analysers), and on them only properties whose values cannot name anything
//! outside the media (numbers, booleans, enums, flags, caps, fractions); a property of any
//! other type (strings, which are file names, URIs or paths on some elements, objects,
//! arrays...) only where the (factory, property) pair is listed in [`STRING_PAIRS`] or by the
//! operator. The operator's list (`--gst-filter-allow`) adds factories (`name`) and pairs
//! (`name.property`); `*` hands the command to GStreamer's own parser as KMS does.
//!
//! The command is checked as text, against the factories' class property specs, before any
//! element exists: some elements act in their constructor or property setters (facedetect
//! loads the file its `profile` names, and OpenCV aborts the process on a file that is not
//! a cascade), so parsing a hostile description with GStreamer's parser would already be too
//! late. The bin is then built element by element from this parse; GStreamer's parser never
//! sees the text.

use super::guard;
use gstreamer as gst;
use gstreamer::prelude::*;

/// The factories any command may use: transforms of raw video or audio with one input and
/// one output that open nothing. facedetect reads the cascade files its plugin was built with
/// (OpenCV's data, installed with it) and is listed; its `profile` properties, which choose
/// another file, are not. Some numeric properties are bounded ([`guard::BOUNDS`]). Left out
/// although they are transforms: cvsobel (OpenCV aborts the process on ordinary orders, and
/// on x-order=0 y-order=0 together), faceblur (its default cascade path is wrong on Debian
/// 12: it cannot load a cascade) and handdetect (it opens its cascades relative to the
/// server's working directory); the operator can add them with `--gst-filter-allow`.
pub const TRANSFORMS: &[&str] = &[
    // Plumbing and caps.
    "capsfilter",
    "identity",
    "queue",
    // Video: conversion, geometry, colour.
    "videoconvert",
    "videoscale",
    "videoconvertscale",
    "videorate",
    "videoflip",
    "videobalance",
    "videocrop",
    "videobox",
    "aspectratiocrop",
    "gamma",
    "coloreffects",
    "chromahold",
    "alpha",
    "alphacolor",
    "deinterlace",
    "videomedian",
    "smooth",
    "gaussianblur",
    "zebrastripe",
    "scenechange",
    "videodiff",
    // Video: overlays (their text properties are listed in STRING_PAIRS).
    "textoverlay",
    "timeoverlay",
    "clockoverlay",
    // Video: effectv and geometric transforms.
    "edgetv",
    "agingtv",
    "dicetv",
    "warptv",
    "shagadelictv",
    "vertigotv",
    "revtv",
    "quarktv",
    "optv",
    "radioactv",
    "streaktv",
    "rippletv",
    "bulge",
    "circle",
    "diffuse",
    "fisheye",
    "kaleidoscope",
    "marble",
    "mirror",
    "pinch",
    "rotate",
    "sphere",
    "square",
    "stretch",
    "tunnel",
    "twirl",
    "waterripple",
    "perspective",
    "burn",
    "dodge",
    "exclusion",
    "solarize",
    "chromium",
    "dilate",
    // Video: OpenCV filters.
    "facedetect",
    "edgedetect",
    "cvsmooth",
    "cvdilate",
    "cverode",
    "cvequalizehist",
    "cvlaplace",
    "retinex",
    "segmentation",
    "skindetect",
    // Audio.
    "audioconvert",
    "audioresample",
    "audiorate",
    "volume",
    "audioecho",
    "audioamplify",
    "audiodynamic",
    "audiocheblimit",
    "audiochebband",
    "audiowsincband",
    "audiowsinclimit",
    "audiopanorama",
    "audioinvert",
    "audiokaraoke",
    "equalizer-10bands",
    "equalizer-3bands",
    "equalizer-nbands",
    "scaletempo",
    "pitch",
    "level",
    "spectrum",
    "removesilence",
];

/// String properties of listed factories that are text, not a path: what the overlays draw,
/// a Pango font description (a font family looked up by name) and strftime formats.
pub const STRING_PAIRS: &[(&str, &str)] = &[
    ("textoverlay", "text"),
    ("textoverlay", "font-desc"),
    ("timeoverlay", "text"),
    ("timeoverlay", "font-desc"),
    ("timeoverlay", "datetime-format"),
    ("clockoverlay", "text"),
    ("clockoverlay", "font-desc"),
    ("clockoverlay", "time-format"),
];

/// Which elements and properties GStreamerFilter commands may use (see the module).
#[derive(Debug, Clone, Default)]
pub struct FilterPolicy {
    /// `*`: anything, parsed by GStreamer (KMS's behaviour).
    any: bool,
    /// Factories the operator added.
    factories: Vec<String>,
    /// (factory, property) pairs the operator added.
    pairs: Vec<(String, String)>,
}

/// A command that passed the policy, ready to be built as often as needed.
#[derive(Debug, Clone)]
pub(crate) enum Checked {
    /// With `*`: the text, for GStreamer's parser.
    Launch(String),
    /// A chain of elements, linked in order.
    Chain(Vec<Step>),
}

/// One element of a chain.
#[derive(Debug, Clone)]
pub(crate) enum Step {
    /// A factory and its properties (name, value as written), checked against its specs.
    Element {
        factory: String,
        props: Vec<(String, String)>,
    },
    /// Caps between two elements: a capsfilter.
    Caps(gst::Caps),
}

const FLAG: &str = "--gst-filter-allow";

/// Most elements in one command: each may hold buffers or a thread (queue), and no filter
/// needs more.
pub const MAX_ELEMENTS: usize = 64;

impl FilterPolicy {
    /// A policy from the operator's list (`None`: the built-in list only). Entries are
    /// factory names, `factory.property` pairs (which allow the factory too) or `*`.
    pub fn new(allow: Option<Vec<String>>) -> FilterPolicy {
        let mut p = FilterPolicy::default();
        for e in allow.into_iter().flatten() {
            let e = e.trim();
            if e == "*" {
                p.any = true;
            } else if let Some((f, prop)) = e.split_once('.') {
                p.factories.push(f.to_string());
                p.pairs.push((f.to_string(), prop.to_string()));
            } else if !e.is_empty() {
                p.factories.push(e.to_string());
            }
        }
        p
    }

    /// The operator's list this policy was made of, in a form [`FilterPolicy::new`] makes the
    /// same policy of (a filter job in a worker checks its command again with it).
    pub(crate) fn allow_list(&self) -> Option<Vec<String>> {
        let mut list: Vec<String> = self.factories.clone();
        list.extend(self.pairs.iter().map(|(f, p)| format!("{f}.{p}")));
        if self.any {
            list.push("*".to_string());
        }
        (!list.is_empty()).then_some(list)
    }

    fn allows_factory(&self, factory: &str) -> bool {
        self.any
            || TRANSFORMS.contains(&factory)
            || self.factories.iter().any(|f| f == factory)
            || test_factory(factory)
    }

    fn allows_pair(&self, factory: &str, property: &str) -> bool {
        self.any
            || STRING_PAIRS.contains(&(factory, property))
            || self
                .pairs
                .iter()
                .any(|(f, p)| f == factory && p == property)
    }

    /// Why `factory`'s property `pspec` may not be set, if it may not (`in_command`: in the
    /// command's text, where every element may be given a `name`).
    pub(crate) fn property_refusal(
        &self,
        factory: &str,
        pspec: &glib::ParamSpec,
        in_command: bool,
    ) -> Option<String> {
        let name = pspec.name();
        if self.any || plain_value(pspec.value_type()) || (in_command && name == "name") {
            return None;
        }
        if self.allows_pair(factory, name) {
            return None;
        }
        let what = if pspec.value_type() == glib::Type::STRING {
            "a string (a file name, URI or path on some elements)".to_string()
        } else {
            format!("of type {}", pspec.value_type())
        };
        Some(format!(
            "the property '{name}' of {factory} is {what}: GStreamerFilter may not set it (the operator can allow it with {FLAG} {factory}.{name})"
        ))
    }

    /// `value` as a value of `factory`'s property `pspec` ([`value_of`]), within the bounds
    /// of [`guard::BOUNDS`] and, for caps, the media bounds (unless the operator listed the
    /// pair or `*`).
    pub(crate) fn value(
        &self,
        factory: &str,
        pspec: &glib::ParamSpec,
        value: &str,
        at_construction: bool,
    ) -> Result<glib::Value, String> {
        let v = value_of(pspec, factory, value, at_construction)?;
        if self.allows_pair(factory, pspec.name()) {
            return Ok(v);
        }
        if let Some(why) = guard::value_refusal(factory, pspec.name(), &v) {
            return Err(why);
        }
        if let Ok(Some(caps)) = v.get::<Option<gst::Caps>>() {
            if let Some(why) = guard::caps_refusal(&caps) {
                return Err(format!("{} of {factory}: {why}", pspec.name()));
            }
        }
        Ok(v)
    }

    /// Checks `command` without creating any element; what to build, or why not.
    pub(crate) fn check(&self, command: &str) -> Result<Checked, String> {
        if command.trim().is_empty() {
            return Err("the command is empty".into());
        }
        if self.any {
            return Ok(Checked::Launch(command.to_string()));
        }
        let mut steps = vec![];
        let mut problems = vec![];
        let tokens = lex(command)?;
        let segments = segments(&tokens)?;
        if segments.len() > MAX_ELEMENTS {
            return Err(format!(
                "the command has {} elements (at most {MAX_ELEMENTS})",
                segments.len()
            ));
        }
        for seg in segments {
            match self.check_segment(&seg) {
                Ok(s) => steps.push(s),
                Err(e) => problems.push(e),
            }
        }
        if problems.is_empty() {
            Ok(Checked::Chain(steps))
        } else {
            Err(problems.join("; "))
        }
    }

    fn check_segment(&self, seg: &[&Word]) -> Result<Step, String> {
        let first = &seg[0];
        if first.eq.is_none() && !first.quoted && is_factory_name(&first.text) {
            return self.check_element(&first.text, &seg[1..]);
        }
        // Caps have '=' in their fields, after the media type.
        let media_type = &first.text[..first.eq.unwrap_or(first.text.len())];
        if media_type.contains('/') {
            let caps = caps(&first.text)?;
            if let Some(why) = guard::caps_refusal(&caps) {
                return Err(why);
            }
            if let Some(w) = seg.get(1) {
                return Err(format!(
                    "unexpected '{}' after the caps {}",
                    w.text, first.text
                ));
            }
            return Ok(Step::Caps(caps));
        }
        Err(format!(
            "'{}' is not an element name or caps: commands are elements and caps linked with '!' (bins, references, URIs and other syntax only with {FLAG} '*')",
            first.text
        ))
    }

    fn check_element(&self, factory: &str, words: &[&Word]) -> Result<Step, String> {
        let mut props = vec![];
        for w in words {
            let Some(eq) =
                w.eq.filter(|&i| !w.key_quoted && is_property_name(&w.text[..i]))
            else {
                return Err(format!(
                    "'{}' after {factory} is not a property=value",
                    w.text
                ));
            };
            // A property given twice takes its last value (and is set once: a construct-only
            // property cannot be given twice).
            let name = &w.text[..eq];
            props.retain(|(n, _)| n != name);
            props.push((name.to_string(), w.text[eq + 1..].to_string()));
        }
        if !self.allows_factory(factory) {
            let set: Vec<&str> = props.iter().map(|(n, _)| n.as_str()).collect();
            let with = if set.is_empty() {
                String::new()
            } else {
                format!(" (with {})", set.join(", "))
            };
            return Err(format!(
                "the element {factory}{with} is not one of the transforms GStreamerFilter commands may use (the operator can allow it with {FLAG} {factory})"
            ));
        }
        let f = gst::ElementFactory::find(factory)
            .ok_or_else(|| format!("no element \"{factory}\""))?;
        let f = f
            .load()
            .map_err(|_| format!("the element {factory} cannot be loaded"))?;
        let class = glib::Class::<gst::Element>::from_type(f.element_type())
            .ok_or_else(|| format!("the element {factory} cannot be loaded"))?;
        let mut problems = vec![];
        for (name, value) in &props {
            let Some(pspec) = class.find_property(name) else {
                problems.push(format!("{factory} has no property {name}"));
                continue;
            };
            if let Some(why) = self.property_refusal(factory, &pspec, true) {
                problems.push(why);
            } else if let Err(e) = self.value(factory, &pspec, value, true) {
                problems.push(e);
            } else if name == "name" && RESERVED_NAMES.contains(&value.as_str()) {
                problems.push(format!(
                    "the name {value} of {factory} is Fluo's own (the names {} are reserved)",
                    RESERVED_NAMES.join(", ")
                ));
            }
        }
        if problems.is_empty() {
            Ok(Step::Element {
                factory: factory.to_string(),
                props,
            })
        } else {
            Err(problems.join("; "))
        }
    }
}

/// The crashing test element: allowed in a test-elements build (the `fluo-test-elements`
/// binary), which alone has it.
#[cfg(feature = "test-elements")]
fn test_factory(factory: &str) -> bool {
    factory == crate::test_crash::element::FACTORY
}

#[cfg(not(feature = "test-elements"))]
fn test_factory(_factory: &str) -> bool {
    false
}

/// Whether values of type `t` are plain data (they cannot name a file, a URI or a device).
fn plain_value(t: glib::Type) -> bool {
    use glib::Type;
    [
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
        || t.is_a(Type::ENUM)
        || t.is_a(Type::FLAGS)
        || t == gst::Caps::static_type()
        || t == gst::Fraction::static_type()
}

/// `value` as a value of the property `pspec` of `owner`, if the text is one (GStreamer's own
/// syntax: numbers, enum nicks, caps...) and it may be set (`at_construction`: while the
/// element is built, when construct-only properties may be given too).
pub(crate) fn value_of(
    pspec: &glib::ParamSpec,
    owner: &str,
    value: &str,
    at_construction: bool,
) -> Result<glib::Value, String> {
    let name = pspec.name();
    let f = pspec.flags();
    if !f.contains(glib::ParamFlags::WRITABLE)
        || (!at_construction && f.contains(glib::ParamFlags::CONSTRUCT_ONLY))
    {
        return Err(format!("the property {name} of {owner} cannot be set"));
    }
    // GStreamer reads an empty number as 0: a value left out is a mistake, not a zero.
    if value.trim().is_empty() && pspec.value_type() != glib::Type::STRING {
        return Err(format!("no value given for {name} of {owner}"));
    }
    if pspec.value_type() == gst::Caps::static_type() && !caps_text(value) {
        return Err(format!("{value:?} is not caps ({name})"));
    }
    let v = glib::Value::deserialize_with_pspec(value, pspec).map_err(|_| {
        format!(
            "{value:?} is not a value of the property '{name}' of {owner} ({})",
            pspec.value_type()
        )
    })?;
    if !v.type_().is_a(pspec.value_type()) || !pspec.value_is_valid(&v) {
        return Err(format!(
            "{value:?} is out of range for the property '{name}' of {owner}"
        ));
    }
    Ok(v)
}

impl Checked {
    /// A new bin with the command's elements, one sink and one source pad.
    pub(crate) fn build(&self) -> Result<gst::Bin, String> {
        let bin = match self {
            Checked::Launch(text) => gst::parse::bin_from_description(text, true)
                .map_err(|e| format!("the command does not parse: {e}"))?,
            Checked::Chain(steps) => build_chain(steps)?,
        };
        if bin.static_pad("sink").is_none() || bin.static_pad("src").is_none() {
            return Err(
                "the command must leave exactly one sink pad and one source pad unlinked".into(),
            );
        }
        guard::guard(&bin);
        Ok(bin)
    }

    /// How many elements of the command have a property `name` that may take `value`
    /// (setElementProperty's check), judged on the factories' class property specs without
    /// creating any element; with `*`, on a fresh build of the command.
    pub(crate) fn property_targets(
        &self,
        policy: &FilterPolicy,
        name: &str,
        value: &str,
    ) -> Result<usize, String> {
        let steps = match self {
            Checked::Launch(_) => return set_property(&self.build()?, policy, name, value, false),
            Checked::Chain(steps) => steps,
        };
        let mut n = 0;
        for step in steps {
            let factory = match step {
                Step::Element { factory, .. } => factory.as_str(),
                Step::Caps(_) => "capsfilter",
            };
            let class = gst::ElementFactory::find(factory)
                .and_then(|f| f.load().ok())
                .and_then(|f| glib::Class::<gst::Element>::from_type(f.element_type()))
                .ok_or_else(|| format!("the element {factory} cannot be loaded"))?;
            if let Some(pspec) = class.find_property(name) {
                if let Some(why) = policy.property_refusal(factory, &pspec, false) {
                    return Err(why);
                }
                policy.value(factory, &pspec, value, false)?;
                n += 1;
            }
        }
        Ok(n)
    }
}

/// Sets `name` to `value` on every element of `bin` that has such a property; how many
/// elements took it. Refuses (setting nothing) if one of them may not or cannot take it
/// (`apply` false: only checks).
pub(crate) fn set_property(
    bin: &gst::Bin,
    policy: &FilterPolicy,
    name: &str,
    value: &str,
    apply: bool,
) -> Result<usize, String> {
    let mut set = vec![];
    for e in bin.iterate_recurse().into_iter().flatten() {
        if let Some(pspec) = e.find_property(name) {
            let factory = e
                .factory()
                .map(|f| f.name().to_string())
                .unwrap_or_else(|| e.name().to_string());
            if let Some(why) = policy.property_refusal(&factory, &pspec, false) {
                return Err(why);
            }
            set.push((e, policy.value(&factory, &pspec, value, false)?));
        }
    }
    if apply {
        for (e, v) in &set {
            e.set_property_from_value(name, v);
        }
    }
    Ok(set.len())
}

/// Names of Fluo's own elements in a filter's pipeline, which a command's elements may not
/// take (Fluo finds its elements by name).
pub const RESERVED_NAMES: &[&str] = &["in", "out", "pre", "post"];

impl Checked {}

fn build_chain(steps: &[Step]) -> Result<gst::Bin, String> {
    let bin = gst::Bin::new();
    let mut elements: Vec<gst::Element> = vec![];
    for step in steps {
        let e = match step {
            Step::Caps(caps) => gst::ElementFactory::make("capsfilter")
                .property("caps", caps)
                .build()
                .map_err(|e| format!("capsfilter: {e}"))?,
            Step::Element { factory, props } => {
                let f = gst::ElementFactory::find(factory)
                    .ok_or_else(|| format!("no element \"{factory}\""))?;
                let class = glib::Class::<gst::Element>::from_type(
                    f.load()
                        .map_err(|_| format!("the element {factory} cannot be loaded"))?
                        .element_type(),
                )
                .ok_or_else(|| format!("the element {factory} cannot be loaded"))?;
                let mut b = gst::ElementFactory::make(factory);
                for (name, value) in props {
                    let pspec = class
                        .find_property(name)
                        .ok_or_else(|| format!("{factory} has no property {name}"))?;
                    b = b.property(name, value_of(&pspec, factory, value, true)?);
                }
                b.build()
                    .map_err(|e| format!("the element {factory} cannot be made: {e}"))?
            }
        };
        bin.add(&e)
            .map_err(|_| format!("two elements are named {}", e.name()))?;
        if let Some(prev) = elements.last() {
            prev.link(&e).map_err(|_| {
                format!(
                    "{} does not link to {}",
                    factory_name(prev),
                    factory_name(&e)
                )
            })?;
        }
        elements.push(e);
    }
    let free = |e: Option<&gst::Element>, dir: gst::PadDirection| {
        e.and_then(|e| {
            e.pads()
                .into_iter()
                .find(|p| p.direction() == dir && !p.is_linked())
        })
    };
    for (pad, name) in [
        (free(elements.first(), gst::PadDirection::Sink), "sink"),
        (free(elements.last(), gst::PadDirection::Src), "src"),
    ] {
        if let Some(pad) = pad {
            let ghost = gst::GhostPad::builder_with_target(&pad)
                .map_err(|e| e.to_string())?
                .name(name)
                .build();
            bin.add_pad(&ghost).map_err(|e| e.to_string())?;
        }
    }
    Ok(bin)
}

fn factory_name(e: &gst::Element) -> String {
    e.factory()
        .map(|f| f.name().to_string())
        .unwrap_or_else(|| e.name().to_string())
}

/// A word of a command: its text with quotes and escapes removed, and where its first `=`
/// outside quotes is.
#[derive(Debug)]
struct Word {
    text: String,
    eq: Option<usize>,
    /// Quotes somewhere in the word.
    quoted: bool,
    /// Quotes before its `=`.
    key_quoted: bool,
}

/// A token: a word, or `None` for `!`.
type Token = Option<Word>;

/// Splits a command into words and links: whitespace separates words (not around `=`),
/// `"..."` quotes, a backslash escapes the next character (as GStreamer's parser does).
fn lex(s: &str) -> Result<Vec<Token>, String> {
    let mut out: Vec<Token> = vec![];
    let mut cur: Option<Word> = None;
    let mut chars = s.chars().peekable();
    let mut in_quotes = false;
    while let Some(c) = chars.next() {
        let word = cur.get_or_insert_with(|| Word {
            text: String::new(),
            eq: None,
            quoted: false,
            key_quoted: false,
        });
        match c {
            '\\' => match chars.next() {
                Some(n) => word.text.push(n),
                None => return Err("the command ends with a backslash".into()),
            },
            '"' => {
                in_quotes = !in_quotes;
                word.quoted = true;
            }
            _ if in_quotes => word.text.push(c),
            '=' => {
                if word.eq.is_none() {
                    word.eq = Some(word.text.len());
                    word.key_quoted = word.quoted;
                }
                word.text.push('=');
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
            }
            '!' => {
                if word.text.is_empty() && !word.quoted {
                    cur = None;
                } else {
                    out.push(cur.take());
                }
                out.push(None);
            }
            c if c.is_whitespace() => {
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
                if chars.peek() == Some(&'=') {
                    continue;
                }
                if word.text.is_empty() && !word.quoted {
                    cur = None;
                } else {
                    out.push(cur.take());
                }
            }
            c if c.is_control() => return Err("the command contains control characters".into()),
            c => word.text.push(c),
        }
    }
    if in_quotes {
        return Err("a quote is not closed".into());
    }
    if let Some(w) = cur.filter(|w| !w.text.is_empty() || w.quoted) {
        out.push(Some(w));
    }
    Ok(out)
}

/// The words between links; refuses an empty link.
fn segments(tokens: &[Token]) -> Result<Vec<Vec<&Word>>, String> {
    let mut segs = vec![vec![]];
    for t in tokens {
        match t {
            Some(w) => segs.last_mut().map(|s| s.push(w)).unwrap_or_default(),
            None => segs.push(vec![]),
        }
    }
    if segs.iter().any(Vec::is_empty) {
        return Err("a link '!' without an element on each side".into());
    }
    Ok(segs)
}

fn is_factory_name(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '+'))
}

fn is_property_name(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
}

/// Caps written in a link: media types only (`video/x-raw,...`).
fn caps(text: &str) -> Result<gst::Caps, String> {
    let bad = || format!("'{text}' is not caps");
    if !caps_text(text) {
        return Err(bad());
    }
    let caps: gst::Caps = text.parse().map_err(|_| bad())?;
    let media_type = |n: &str| {
        n.split_once('/').is_some_and(|(a, b)| {
            is_property_name(a)
                && !b.is_empty()
                && b.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+'))
        })
    };
    if caps.is_any() || caps.is_empty() || !caps.iter().all(|s| media_type(s.name())) {
        return Err(bad());
    }
    Ok(caps)
}

/// Whether each structure of a caps text starts with a valid media type name: GStreamer's
/// caps parser logs a CRITICAL on one that does not (`1e400`, `-1`), so that text never
/// reaches it.
fn caps_text(text: &str) -> bool {
    text.split(';').all(|part| {
        let name = part
            .trim()
            .split([',', '('])
            .next()
            .unwrap_or_default()
            .trim();
        name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "/-_.:+".contains(c))
    })
}
