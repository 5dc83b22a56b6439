//! The interface model: every remote class, property, method, event and complex type that a
//! Kurento client can name, loaded from Fluo's compact `.idl` descriptions (see [`idl`]).
//!
//! The built-in modules `core`, `elements` and `filters` are compiled in; third-party modules
//! add theirs with [`Model::add_module`].

pub mod check;
pub mod idl;
mod kmd;

use serde_json::Value;
use std::collections::HashMap;
use std::sync::OnceLock;

/// A primitive type of the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prim {
    /// `boolean`
    Boolean,
    /// `int` (32-bit)
    Int,
    /// `int64`
    Int64,
    /// `float`
    Float,
    /// `double`
    Double,
    /// `String`
    String,
}

/// A type as written in the model: a primitive, a named type, an array or a string-keyed map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeRef {
    /// A primitive.
    Prim(Prim),
    /// A remote class, enum or struct by name.
    Named(String),
    /// `T[]`
    Array(Box<TypeRef>),
    /// `T<>`
    Map(Box<TypeRef>),
}

impl TypeRef {
    /// Parses `int`, `String[]`, `String<>`, `MediaElement`.
    pub fn parse(s: &str) -> TypeRef {
        let s = s.trim();
        if let Some(inner) = s.strip_suffix("[]") {
            return TypeRef::Array(Box::new(TypeRef::parse(inner)));
        }
        if let Some(inner) = s.strip_suffix("<>") {
            return TypeRef::Map(Box::new(TypeRef::parse(inner)));
        }
        match s {
            "boolean" => TypeRef::Prim(Prim::Boolean),
            "int" => TypeRef::Prim(Prim::Int),
            "int64" => TypeRef::Prim(Prim::Int64),
            "float" => TypeRef::Prim(Prim::Float),
            "double" => TypeRef::Prim(Prim::Double),
            "String" => TypeRef::Prim(Prim::String),
            other => TypeRef::Named(other.to_string()),
        }
    }
}

impl std::fmt::Display for TypeRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TypeRef::Prim(p) => f.write_str(match p {
                Prim::Boolean => "boolean",
                Prim::Int => "int",
                Prim::Int64 => "int64",
                Prim::Float => "float",
                Prim::Double => "double",
                Prim::String => "String",
            }),
            TypeRef::Named(n) => f.write_str(n),
            TypeRef::Array(t) => write!(f, "{t}[]"),
            TypeRef::Map(t) => write!(f, "{t}<>"),
        }
    }
}

/// A parameter of a constructor or method, or a field of a struct or event.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamDef {
    /// Name as on the wire.
    pub name: String,
    /// Declared type.
    pub ty: TypeRef,
    /// May be absent.
    pub optional: bool,
    /// Value applied when absent.
    pub default: Option<Value>,
}

/// A property of a remote class.
#[derive(Debug, Clone, PartialEq)]
pub struct PropDef {
    /// Name (`getFoo` / `setFoo` accessors derive from it).
    pub name: String,
    /// Declared type.
    pub ty: TypeRef,
    /// Default value, if the model gives one.
    pub default: Option<Value>,
    /// Set at construction, never changed (getter only).
    pub is_final: bool,
    /// Getter only.
    pub read_only: bool,
}

/// A method of a remote class.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodDef {
    /// Name.
    pub name: String,
    /// Parameters in order.
    pub params: Vec<ParamDef>,
    /// Return type; `None` for void.
    pub ret: Option<TypeRef>,
}

/// A remote class.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassDef {
    /// Short name (`WebRtcEndpoint`).
    pub name: String,
    /// Module name (`core`, `elements`, ...).
    pub module: String,
    /// Prefix used in ids, qualified names and `__module__` (`kurento` for the built-ins).
    pub prefix: String,
    /// Parent class.
    pub extends: Option<String>,
    /// No factory: cannot be created.
    pub is_abstract: bool,
    /// Constructor parameters (`None` when the class has no constructor).
    pub ctor: Option<Vec<ParamDef>>,
    /// Own properties.
    pub props: Vec<PropDef>,
    /// Own methods.
    pub methods: Vec<MethodDef>,
    /// Own events.
    pub events: Vec<String>,
}

/// A complex type.
#[derive(Debug, Clone, PartialEq)]
pub enum TypeDef {
    /// A string enum.
    Enum {
        /// Name.
        name: String,
        /// Module prefix.
        prefix: String,
        /// Members.
        values: Vec<String>,
    },
    /// A JSON object with `__module__` / `__type__`.
    Struct {
        /// Name.
        name: String,
        /// Module prefix.
        prefix: String,
        /// Parent struct.
        extends: Option<String>,
        /// Own fields.
        fields: Vec<ParamDef>,
    },
}

/// An event type.
#[derive(Debug, Clone, PartialEq)]
pub struct EventDef {
    /// Name.
    pub name: String,
    /// Module prefix.
    pub prefix: String,
    /// Parent event.
    pub extends: Option<String>,
    /// Own fields.
    pub fields: Vec<ParamDef>,
}

/// One module of the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleDef {
    /// Name (`core`).
    pub name: String,
    /// Version (`7.3.0`).
    pub version: String,
    /// Classes, in model order.
    pub classes: Vec<String>,
    /// Complex types, in model order.
    pub types: Vec<String>,
    /// Events, in model order.
    pub events: Vec<String>,
}

/// The whole interface model.
#[derive(Debug, Clone, Default)]
pub struct Model {
    modules: Vec<ModuleDef>,
    classes: HashMap<String, ClassDef>,
    types: HashMap<String, TypeDef>,
    events: HashMap<String, EventDef>,
}

const BUILTIN: [&str; 3] = [
    include_str!("../../model/core.idl"),
    include_str!("../../model/elements.idl"),
    include_str!("../../model/filters.idl"),
];

/// The prefix used for ids, qualified names and `__module__` of a module's items.
pub fn module_prefix(module: &str) -> &str {
    match module {
        "core" | "elements" | "filters" => "kurento",
        other => other,
    }
}

impl Model {
    /// The built-in model (core, elements, filters), parsed once.
    pub fn builtin() -> &'static Model {
        static MODEL: OnceLock<Model> = OnceLock::new();
        MODEL.get_or_init(|| {
            let mut m = Model::default();
            for text in BUILTIN {
                m.add_module(text)
                    .expect("built-in model files are valid (checked by unit tests)");
            }
            m
        })
    }

    /// Adds a module described in the `.idl` format.
    pub fn add_module(&mut self, text: &str) -> Result<(), idl::IdlError> {
        let parsed = idl::parse(text)?;
        let mut module = ModuleDef {
            name: parsed.name.clone(),
            version: parsed.version.clone(),
            classes: vec![],
            types: vec![],
            events: vec![],
        };
        for c in parsed.classes {
            module.classes.push(c.name.clone());
            self.classes.insert(c.name.clone(), c);
        }
        for t in parsed.types {
            let name = match &t {
                TypeDef::Enum { name, .. } | TypeDef::Struct { name, .. } => name.clone(),
            };
            module.types.push(name.clone());
            // A type declared already (fields alike: the loader checks) keeps its first
            // definition and prefix: a later module does not take a built-in type over.
            self.types.entry(name).or_insert(t);
        }
        for e in parsed.events {
            module.events.push(e.name.clone());
            self.events.insert(e.name.clone(), e);
        }
        self.modules.push(module);
        Ok(())
    }

    /// All modules in load order.
    pub fn modules(&self) -> &[ModuleDef] {
        &self.modules
    }

    /// A module by name.
    pub fn module(&self, name: &str) -> Option<&ModuleDef> {
        self.modules.iter().find(|m| m.name == name)
    }

    /// A class by short name or qualified name (`kurento.PassThrough`).
    pub fn class(&self, name: &str) -> Option<&ClassDef> {
        if let Some(c) = self.classes.get(name) {
            return Some(c);
        }
        let (prefix, short) = name.split_once('.')?;
        self.classes.get(short).filter(|c| c.prefix == prefix)
    }

    /// All classes (unordered).
    pub fn classes(&self) -> impl Iterator<Item = &ClassDef> {
        self.classes.values()
    }

    /// A complex type by name.
    pub fn type_def(&self, name: &str) -> Option<&TypeDef> {
        self.types.get(name)
    }

    /// An event by name.
    pub fn event(&self, name: &str) -> Option<&EventDef> {
        self.events.get(name)
    }

    /// The class and its ancestors, the class itself first.
    pub fn lineage<'a>(&'a self, class: &'a ClassDef) -> impl Iterator<Item = &'a ClassDef> {
        std::iter::successors(Some(class), move |c| {
            c.extends.as_deref().and_then(|p| self.classes.get(p))
        })
    }

    /// Whether `class` is `ancestor` or derives from it.
    pub fn is_a(&self, class: &str, ancestor: &str) -> bool {
        self.class(class)
            .is_some_and(|c| self.lineage(c).any(|a| a.name == ancestor))
    }

    /// A method of the class or of an ancestor.
    pub fn method<'a>(&'a self, class: &'a ClassDef, name: &str) -> Option<&'a MethodDef> {
        self.lineage(class)
            .find_map(|c| c.methods.iter().find(|m| m.name == name))
    }

    /// A property of the class or of an ancestor.
    pub fn property<'a>(&'a self, class: &'a ClassDef, name: &str) -> Option<&'a PropDef> {
        self.lineage(class)
            .find_map(|c| c.props.iter().find(|p| p.name == name))
    }

    /// Every property of the class and its ancestors.
    pub fn all_properties<'a>(&'a self, class: &'a ClassDef) -> impl Iterator<Item = &'a PropDef> {
        self.lineage(class).flat_map(|c| c.props.iter())
    }

    /// Whether the class or an ancestor declares the event.
    pub fn supports_event(&self, class: &ClassDef, event: &str) -> bool {
        self.lineage(class)
            .any(|c| c.events.iter().any(|e| e == event))
    }

    /// All fields of a struct, the root ancestor's first.
    pub fn struct_fields(&self, name: &str) -> Vec<&ParamDef> {
        let mut chain = vec![];
        let mut cur = self.types.get(name);
        while let Some(TypeDef::Struct {
            extends, fields, ..
        }) = cur
        {
            chain.push(fields);
            cur = extends.as_deref().and_then(|p| self.types.get(p));
        }
        chain.into_iter().rev().flatten().collect()
    }

    /// All fields of an event, the root ancestor's first.
    pub fn event_fields(&self, name: &str) -> Vec<&ParamDef> {
        let mut chain = vec![];
        let mut cur = self.events.get(name);
        while let Some(e) = cur {
            chain.push(&e.fields);
            cur = e.extends.as_deref().and_then(|p| self.events.get(p));
        }
        chain.into_iter().rev().flatten().collect()
    }

    /// The module's description as kmd-shaped JSON text (for `ServerManager.getKmd`).
    pub fn kmd_json(&self, module: &str) -> Option<String> {
        kmd::render(self, module)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_module_redeclaring_a_type_does_not_take_it_over() {
        let mut m = Model::builtin().clone();
        let prefix = |m: &Model| match m.type_def("RembParams") {
            Some(TypeDef::Struct { prefix, .. }) => prefix.clone(),
            other => panic!("{other:?}"),
        };
        let before = prefix(&m);
        m.add_module("module other 1.0.0\n\nstruct RembParams\n  field upLosses?: int = 12\n")
            .expect("parses");
        assert_eq!(prefix(&m), before, "the built-in definition stays");
        let other = m.module("other").expect("listed");
        assert_eq!(other.types, ["RembParams"], "the module still lists it");
    }

    #[test]
    fn a_module_class_extending_a_qualified_parent_has_the_whole_lineage() {
        let mut m = Model::builtin().clone();
        m.add_module(
            "module demo 1.0.0\n\
             class Base extends kurento.OpenCVFilter abstract\n\
             class Leaf extends demo.Base\n\
             \x20 ctor mediaPipeline: MediaPipeline\n",
        )
        .expect("parses");
        let leaf = m.class("demo.Leaf").expect("Leaf");
        let lineage: Vec<_> = m.lineage(leaf).map(|c| c.name.as_str()).collect();
        assert_eq!(
            lineage,
            [
                "Leaf",
                "Base",
                "OpenCVFilter",
                "Filter",
                "MediaElement",
                "MediaObject"
            ]
        );
        assert!(m.is_a("Leaf", "MediaElement"));
        assert!(m.method(leaf, "connect").is_some());
        assert!(m.supports_event(leaf, "MediaFlowInStateChanged"));
        let kmd: serde_json::Value =
            serde_json::from_str(&m.kmd_json("demo").expect("kmd")).expect("JSON");
        assert_eq!(kmd["remoteClasses"][0]["extends"], "OpenCVFilter");
    }

    #[test]
    fn builtin_model_loads_and_links() {
        let m = Model::builtin();
        let names: Vec<_> = m.modules().iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["core", "elements", "filters"]);
        let w = m.class("WebRtcEndpoint").expect("WebRtcEndpoint");
        assert_eq!(w.module, "elements");
        let lineage: Vec<_> = m.lineage(w).map(|c| c.name.as_str()).collect();
        assert_eq!(
            lineage,
            [
                "WebRtcEndpoint",
                "BaseRtpEndpoint",
                "SdpEndpoint",
                "SessionEndpoint",
                "Endpoint",
                "MediaElement",
                "MediaObject"
            ]
        );
        assert!(m.method(w, "processOffer").is_some());
        assert!(m.method(w, "addTag").is_some());
        assert!(m.supports_event(w, "IceCandidateFound"));
        assert!(m.supports_event(w, "Error"));
        assert!(m.class("kurento.PassThrough").is_some());
        assert!(m.class("chroma.PassThrough").is_none());
        // every named type referenced anywhere resolves
        for c in m.classes() {
            let mut tys: Vec<&TypeRef> = c.props.iter().map(|p| &p.ty).collect();
            for meth in &c.methods {
                tys.extend(meth.params.iter().map(|p| &p.ty));
                tys.extend(meth.ret.iter());
            }
            for p in c.ctor.iter().flatten() {
                tys.push(&p.ty);
            }
            for t in tys {
                let mut t = t;
                while let TypeRef::Array(i) | TypeRef::Map(i) = t {
                    t = i;
                }
                if let TypeRef::Named(n) = t {
                    assert!(
                        m.class(n).is_some() || m.type_def(n).is_some(),
                        "{}: unresolved type {n}",
                        c.name
                    );
                }
            }
            for e in &c.events {
                assert!(m.event(e).is_some(), "{}: unknown event {e}", c.name);
            }
        }
        let f: Vec<_> = m
            .event_fields("IceCandidateFound")
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(
            f,
            ["source", "timestampMillis", "tags", "type", "candidate"]
        );
    }
}
