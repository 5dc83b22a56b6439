//! Fluo's module API: how a module adds element types to the server (docs/modules.md).
//!
//! A [`Module`] describes its types in Fluo's `.idl` format (the one the built-in model is
//! written in: `fluo_api::model::idl`), the facts a Kurento kmd file holds (constructor
//! parameters with types and defaults, properties, methods, events with their fields, the
//! parent class) and makes an [`Instance`] for each element a client creates. Fluo hosts the
//! instance: it answers the element's methods ([`Instance::invoke`], JSON values in and out,
//! errors with Kurento codes), gives it the element's decoded video frames
//! ([`Instance::process`]) and raises the events it emits ([`Host::emit`]) to the clients
//! that subscribed. The engine does everything else a MediaElement does (connections, tags,
//! the base methods and events).
//!
//! Everything that crosses this API is plain data (JSON values, byte planes, numbers): no
//! GStreamer or Fluo type, so that a module built to WebAssembly can implement it too.
//!
//! A module that panics is contained: the host catches the panic (in a build that unwinds,
//! as debug builds do), raises an Error event on that element, and stops its media; the
//! server and every other element go on.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod opencv;
pub mod testing;

pub use fluo_api::{ErrorCode, KurentoError};
pub use serde_json::{Map, Value};

/// A module: its interface and a factory for its element types. Fluo keeps one value of it
/// for the server's lifetime and calls it from any thread.
pub trait Module: Send + Sync + 'static {
    /// The module's interface in Fluo's `.idl` format: its `module <name> <version>` line, its
    /// classes (each `extends` a Fluo class, `Filter` for a filter on video), complex types and
    /// events. `ServerManager.getInfo` lists the module with its classes that have a
    /// constructor; `getKmd` answers this description as kmd JSON.
    fn idl(&self) -> &str;

    /// A new element of `class` (one of the module's classes with a constructor), from its
    /// constructor parameters, already checked against the description (types, required
    /// ones present, defaults applied). The parameters that name other objects (the
    /// `mediaPipeline`) carry their ids. An error answers the client's `create`. `host` is
    /// the new element's (an image asked for here arrives in [`Instance::image`]).
    fn create(
        &self,
        host: &mut dyn Host,
        class: &str,
        params: &Map<String, Value>,
    ) -> Result<Box<dyn Instance>, KurentoError>;
}

/// One element of a module's type. Fluo serialises the calls: one at a time, from any
/// thread.
pub trait Instance: Send + 'static {
    /// The pixel format of the frames [`Instance::process`] gets (asked once, at create).
    fn format(&self) -> PixelFormat {
        PixelFormat::Rgba
    }

    /// A method that the element's class, or an ancestor class in the same module,
    /// declares, with its parameters checked against the description. The result is the
    /// method's return value (`Value::Null` for void). Fluo answers the methods of Kurento's
    /// base classes itself; they never reach the instance ([`not_handled`] for a declared
    /// method the instance does not implement).
    fn invoke(
        &mut self,
        host: &mut dyn Host,
        method: &str,
        params: &Map<String, Value>,
    ) -> Result<Value, KurentoError>;

    /// A client set `name`, a property its class (or an ancestor in its module) declares, to
    /// `value` (checked against its type). An error refuses the value: the client gets it
    /// and the property keeps its old value. Fluo stores the values and answers their reads
    /// (a constructor parameter of the same name gives the first value).
    fn property_set(
        &mut self,
        _host: &mut dyn Host,
        _name: &str,
        _value: &Value,
    ) -> Result<(), KurentoError> {
        Ok(())
    }

    /// An image asked for with [`Host::load_image`] arrived (decoded). A load that fails
    /// does not come here: Fluo raises the element's Error event.
    fn image(&mut self, _host: &mut dyn Host, _request: u64, _image: Image) {}

    /// One decoded video frame of the element's input, changed in place: what the
    /// element's output shows.
    fn process(&mut self, host: &mut dyn Host, frame: &mut VideoFrame<'_>);

    /// Why the instance cannot run any more, asked after each call: an instance that runs
    /// sandboxed code (a WebAssembly module that trapped or broke its time or memory limit)
    /// says so here instead of panicking. Fluo then ends it as after a panic (an Error event
    /// with this text, no more frames, errors for its methods).
    fn stopped(&self) -> Option<String> {
        None
    }
}

/// What Fluo offers an instance while it runs.
pub trait Host {
    /// Raises `event` (one the class declares in the description) on the element, with its
    /// own fields (Fluo adds the base ones: source, timestamp, tags, type).
    fn emit(&mut self, event: &str, fields: Map<String, Value>);

    /// Loads the image (PNG or JPEG) at `uri` (file://, http://, https://, checked against
    /// the server's URI allow-list now), decoded later, away from the media: it arrives in
    /// [`Instance::image`] with the number returned here. A URI that is malformed or not
    /// allowed is an error now (40107, as the overlay filters answer); an image that cannot
    /// be read or decoded raises the element's Error event later.
    fn load_image(&mut self, uri: &str) -> Result<u64, KurentoError>;

    /// Raises the element's `Error` event with `description` (Fluo puts the class's name
    /// before it; errorCode 40003, type GSTREAMER_FILTER_ERROR, as every module element's
    /// Error): something went wrong that the element's media survives. The element goes on
    /// (a panic is what stops it). [`opencv`]'s base raises a failed frame's error here, as
    /// KMS's OpenCVFilter raises the exception its `process` throws.
    fn error(&mut self, description: &str);
}

/// How a frame's pixels are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    /// Packed 8-bit red, green, blue, alpha: one plane, 4 bytes a pixel.
    Rgba,
    /// Planar 8-bit YUV 4:2:0: Y at full size, U and V at half width and height (rounded up).
    I420,
    /// Packed 8-bit blue, green, red, alpha: one plane, 4 bytes a pixel (OpenCV's `CV_8UC4`
    /// as KMS's OpenCVFilter hands it to `process`: see [`opencv`]).
    Bgra,
}

/// One plane of a frame: rows of `stride` bytes (a row may carry padding after its pixels).
#[derive(Debug)]
pub struct Plane<'a> {
    /// The plane's bytes, row after row.
    pub data: &'a mut [u8],
    /// Bytes from one row's start to the next's.
    pub stride: usize,
}

/// A decoded video frame, writable.
#[derive(Debug)]
pub struct VideoFrame<'a> {
    /// How the planes are laid out.
    pub format: PixelFormat,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Presentation time since the start of the element's stream, in nanoseconds (`None`
    /// when the frame has none).
    pub pts_ns: Option<u64>,
    /// One plane for [`PixelFormat::Rgba`] and [`PixelFormat::Bgra`]; Y, U, V for
    /// [`PixelFormat::I420`].
    pub planes: Vec<Plane<'a>>,
}

/// A decoded image: straight (not premultiplied) RGBA, 4 bytes a pixel, rows packed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 4` bytes.
    pub rgba: Vec<u8>,
}

impl Image {
    /// The pixel at (`x`, `y`) as RGBA, `None` outside the image.
    pub fn pixel(&self, x: u32, y: u32) -> Option<[u8; 4]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let i = (y as usize * self.width as usize + x as usize) * 4;
        self.rgba.get(i..i + 4).map(|p| [p[0], p[1], p[2], p[3]])
    }
}

/// The answer for a method an instance does not handle (the client gets this error; only
/// the methods the module's own classes declare reach an instance, base classes' methods
/// are answered by Fluo).
pub fn not_handled(method: &str) -> KurentoError {
    KurentoError::new(
        ErrorCode::MediaObjectOperationNotSupported,
        format!("{method} is not implemented by this module"),
    )
}

/// Whether Fluo can host the module's classes: each one `extends` a class of the module or
/// one of Fluo's (without a cycle), and each one a client can create (not abstract, with a
/// constructor) is a Filter, directly, through [`opencv::BASE`] or through the module's own
/// classes: Fluo hosts a module's elements as filters on video. The error names the class.
pub fn check_classes(module: &dyn Module) -> Result<(), String> {
    let parsed = fluo_api::model::idl::parse(module.idl()).map_err(|e| e.to_string())?;
    let builtin = fluo_api::model::Model::builtin();
    for class in &parsed.classes {
        let mut cur = class;
        let mut steps = 0;
        let is_filter = loop {
            let Some(parent) = cur.extends.as_deref() else {
                break false;
            };
            if let Some(own) = parsed.classes.iter().find(|c| c.name == parent) {
                steps += 1;
                if steps > parsed.classes.len() {
                    return Err(format!(
                        "{}: its module's classes extend each other in a cycle",
                        class.name
                    ));
                }
                cur = own;
                continue;
            }
            if let Some((module, _)) = parent.split_once('.') {
                // The parser reads kurento.X and the module's own prefix as short names:
                // what is left names another module's class.
                return Err(format!(
                    "{} extends {parent}, a class of another module ({module}): a module's classes extend its own classes or Fluo's (kurento.*)",
                    cur.name
                ));
            }
            if builtin.class(parent).is_none() {
                return Err(format!(
                    "{} extends {parent}, which is neither a class of its module nor one of Fluo's",
                    cur.name
                ));
            }
            break builtin.is_a(parent, "Filter");
        };
        if !class.is_abstract && class.ctor.is_some() && !is_filter {
            return Err(format!(
                "{} can be created but is not a Filter: Fluo hosts a module's elements as filters on video",
                class.name
            ));
        }
    }
    Ok(())
}

/// The module's name and version, from its description's `module` line; the error says
/// what does not parse.
pub fn name_and_version(module: &dyn Module) -> Result<(String, String), String> {
    let parsed = fluo_api::model::idl::parse(module.idl()).map_err(|e| e.to_string())?;
    Ok((parsed.name, parsed.version))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Described(&'static str);

    impl Module for Described {
        fn idl(&self) -> &str {
            self.0
        }
        fn create(
            &self,
            _: &mut dyn Host,
            _: &str,
            _: &Map<String, Value>,
        ) -> Result<Box<dyn Instance>, KurentoError> {
            Err(not_handled("create"))
        }
    }

    fn check(classes: &str) -> Result<(), String> {
        let idl = format!("module m 1.0.0\n{classes}");
        check_classes(&Described(Box::leak(idl.into_boxed_str())))
    }

    #[test]
    fn a_creatable_class_must_be_a_filter_and_every_parent_known() {
        let ctor = "  ctor mediaPipeline: MediaPipeline\n";
        assert_eq!(check(&format!("class A extends Filter\n{ctor}")), Ok(()));
        assert_eq!(
            check(&format!("class A extends OpenCVFilter\n{ctor}")),
            Ok(())
        );
        assert_eq!(
            check(&format!(
                "class B extends OpenCVFilter abstract\nclass A extends B\n{ctor}"
            )),
            Ok(())
        );
        // A parent qualified as a client writes it: Fluo's (kurento.) or the module's own.
        for parent in ["kurento.Filter", "kurento.OpenCVFilter"] {
            assert_eq!(check(&format!("class A extends {parent}\n{ctor}")), Ok(()));
        }
        assert_eq!(
            check(&format!(
                "class B extends kurento.OpenCVFilter abstract\nclass A extends m.B\n{ctor}"
            )),
            Ok(())
        );
        let e = check(&format!("class A extends kurento.WebRtcEndpoint\n{ctor}"))
            .expect_err("qualified, no filter");
        assert!(e.starts_with("A can be created but is not a Filter"), "{e}");
        let e = check(&format!("class A extends chroma.ChromaFilter\n{ctor}"))
            .expect_err("another module's class");
        assert!(
            e.starts_with("A extends chroma.ChromaFilter, a class of another module (chroma)"),
            "{e}"
        );
        let e = check(&format!("class A extends kurento.Nope\n{ctor}")).expect_err("unknown");
        assert!(e.starts_with("A extends Nope, which is neither"), "{e}");
        // Not created: any known parent.
        assert_eq!(check("class B extends MediaObject abstract\n"), Ok(()));
        let e = check(&format!("class A extends WebRtcEndpoint\n{ctor}")).expect_err("no filter");
        assert!(e.starts_with("A can be created but is not a Filter"), "{e}");
        let e = check(&format!("class A\n{ctor}")).expect_err("no parent");
        assert!(e.starts_with("A can be created but is not a Filter"), "{e}");
        let e = check(&format!("class A extends Nope\n{ctor}")).expect_err("unknown");
        assert!(e.starts_with("A extends Nope, which is neither"), "{e}");
        let e = check(&format!(
            "class A extends B\n{ctor}class B extends A abstract\n"
        ))
        .expect_err("a cycle");
        assert!(e.contains("in a cycle"), "{e}");
    }
}
