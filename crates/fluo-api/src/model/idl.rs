//! Parser for Fluo's compact interface description format (`.idl`).
//!
//! One item per line, members indented under their class, struct or event:
//!
//! ```text
//! module core 7.3.0
//! class PassThrough extends MediaElement      # `abstract` may follow
//!   ctor mediaPipeline: MediaPipeline           # a bare `ctor` = constructor without params
//!   prop name: String                           # flags after the type: final, readonly
//!   prop sendTagsInEvents: boolean = false      # `= <JSON literal>` is the default
//!   method getTag(key: String): String          # `name?:` marks an optional parameter
//!   event Error
//! enum MediaType AUDIO DATA VIDEO
//! struct Tag
//!   field key: String
//! event Error extends RaiseBase
//!   field description: String
//! ```
//! `#` starts a comment when it begins a line or follows whitespace outside a JSON literal.
//!
//! A parent after `extends` may be qualified as a client sees it: `kurento.Filter` (Fluo's
//! built-in classes, types and events) or the module's own prefix (`demo.Base`) are read as
//! the short name (`Filter`, `Base`), which every lookup of the model uses; a parent of
//! another module (`chroma.ChromaFilter`) stays qualified, for the loader to refuse.

use super::{module_prefix, ClassDef, EventDef, MethodDef, ParamDef, PropDef, TypeDef, TypeRef};
use serde_json::Value;
use std::fmt;

/// A syntax error with its line number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdlError {
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for IdlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for IdlError {}

/// A parsed module.
#[derive(Debug, Clone, Default)]
pub struct ParsedModule {
    /// Module name.
    pub name: String,
    /// Module version.
    pub version: String,
    /// Classes.
    pub classes: Vec<ClassDef>,
    /// Complex types.
    pub types: Vec<TypeDef>,
    /// Events.
    pub events: Vec<EventDef>,
}

enum Open {
    None,
    Class(ClassDef),
    Struct(TypeDef),
    Event(EventDef),
}

/// Parses one module.
pub fn parse(text: &str) -> Result<ParsedModule, IdlError> {
    let mut m = ParsedModule::default();
    let mut open = Open::None;
    let mut prefix = String::new();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let err = |message: String| IdlError {
            line: line_no,
            message,
        };
        let line = strip_comment(raw);
        if line.trim().is_empty() {
            continue;
        }
        let indented = line.starts_with(' ');
        let line = line.trim();
        let (kw, rest) = line.split_once(' ').unwrap_or((line, ""));
        let rest = rest.trim();
        if !indented {
            close(&mut m, std::mem::replace(&mut open, Open::None));
            match kw {
                "module" => {
                    let mut it = rest.split_whitespace();
                    m.name = it.next().ok_or_else(|| err("module name".into()))?.into();
                    m.version = it.next().unwrap_or("0.0.0").into();
                    prefix = module_prefix(&m.name).to_string();
                }
                "class" => {
                    let mut it = rest.split_whitespace();
                    let name = it.next().ok_or_else(|| err("class name".into()))?;
                    let mut c = ClassDef {
                        name: name.into(),
                        module: m.name.clone(),
                        prefix: prefix.clone(),
                        extends: None,
                        is_abstract: false,
                        ctor: None,
                        props: vec![],
                        methods: vec![],
                        events: vec![],
                    };
                    while let Some(w) = it.next() {
                        match w {
                            "extends" => {
                                let p = it.next().ok_or_else(|| err("extends what?".into()))?;
                                c.extends = Some(parent(p, &prefix));
                            }
                            "abstract" => c.is_abstract = true,
                            other => return Err(err(format!("unexpected '{other}'"))),
                        }
                    }
                    open = Open::Class(c);
                }
                "enum" => {
                    let mut it = rest.split_whitespace();
                    let name = it.next().ok_or_else(|| err("enum name".into()))?;
                    m.types.push(TypeDef::Enum {
                        name: name.into(),
                        prefix: prefix.clone(),
                        values: it.map(String::from).collect(),
                    });
                }
                "struct" | "event" => {
                    let (name, extends) = match rest.split_once(" extends ") {
                        Some((n, e)) => (n.trim(), Some(parent(e.trim(), &prefix))),
                        None => (rest, None),
                    };
                    if name.is_empty() {
                        return Err(err(format!("{kw} name")));
                    }
                    open = if kw == "struct" {
                        Open::Struct(TypeDef::Struct {
                            name: name.into(),
                            prefix: prefix.clone(),
                            extends,
                            fields: vec![],
                        })
                    } else {
                        Open::Event(EventDef {
                            name: name.into(),
                            prefix: prefix.clone(),
                            extends,
                            fields: vec![],
                        })
                    };
                }
                other => return Err(err(format!("unknown item '{other}'"))),
            }
            continue;
        }
        match (&mut open, kw) {
            (Open::Class(c), "ctor") => {
                let ctor = c.ctor.get_or_insert_with(Vec::new);
                if !rest.is_empty() {
                    ctor.push(param(rest).map_err(err)?);
                }
            }
            (Open::Class(c), "prop") => {
                let (body, flags) = split_flags(rest);
                let p = param(body).map_err(err)?;
                c.props.push(PropDef {
                    name: p.name,
                    ty: p.ty,
                    default: p.default,
                    is_final: flags.contains(&"final"),
                    read_only: flags.contains(&"readonly"),
                });
            }
            (Open::Class(c), "method") => c.methods.push(method(rest).map_err(err)?),
            (Open::Class(c), "event") => c.events.push(rest.to_string()),
            (Open::Struct(TypeDef::Struct { fields, .. }), "field") => {
                fields.push(param(rest).map_err(err)?)
            }
            (Open::Event(e), "field") => e.fields.push(param(rest).map_err(err)?),
            (_, other) => return Err(err(format!("'{other}' is not allowed here"))),
        }
    }
    close(&mut m, open);
    if m.name.is_empty() {
        return Err(IdlError {
            line: 1,
            message: "missing 'module' line".into(),
        });
    }
    Ok(m)
}

/// A parent's name as the model looks it up: `kurento.X` and `<own prefix>.X` as `X`; any
/// other name as written.
fn parent(name: &str, prefix: &str) -> String {
    match name.split_once('.') {
        Some((p, short)) if (p == "kurento" || p == prefix) && !short.is_empty() => short.into(),
        _ => name.into(),
    }
}

fn close(m: &mut ParsedModule, open: Open) {
    match open {
        Open::None => {}
        Open::Class(c) => m.classes.push(c),
        Open::Struct(t) => m.types.push(t),
        Open::Event(e) => m.events.push(e),
    }
}

fn strip_comment(line: &str) -> &str {
    let mut in_str = false;
    let mut prev = ' ';
    for (i, ch) in line.char_indices() {
        match ch {
            '"' if prev != '\\' => in_str = !in_str,
            '#' if !in_str && (i == 0 || prev.is_whitespace()) => return &line[..i],
            _ => {}
        }
        prev = ch;
    }
    line
}

/// Splits trailing `final` / `readonly` words off a property line.
fn split_flags(s: &str) -> (&str, Vec<&str>) {
    let mut body = s.trim_end();
    let mut flags = vec![];
    loop {
        match body.rsplit_once(' ') {
            Some((head, w @ ("final" | "readonly"))) => {
                flags.push(w);
                body = head.trim_end();
            }
            _ => return (body, flags),
        }
    }
}

/// `name?: Type = <json>`
fn param(s: &str) -> Result<ParamDef, String> {
    let (name, rest) = s
        .split_once(':')
        .ok_or_else(|| format!("expected 'name: Type' in '{s}'"))?;
    let name = name.trim();
    let (name, optional) = match name.strip_suffix('?') {
        Some(n) => (n, true),
        None => (name, false),
    };
    let (ty, default) = match rest.split_once('=') {
        Some((t, d)) => {
            let v: Value =
                serde_json::from_str(d.trim()).map_err(|e| format!("bad default '{d}': {e}"))?;
            (t, Some(v))
        }
        None => (rest, None),
    };
    if name.is_empty() || ty.trim().is_empty() {
        return Err(format!("expected 'name: Type' in '{s}'"));
    }
    Ok(ParamDef {
        name: name.into(),
        ty: TypeRef::parse(ty),
        optional: optional || default.is_some(),
        default,
    })
}

/// `name(p: T, q?: U = 1): Ret`
fn method(s: &str) -> Result<MethodDef, String> {
    let open = s.find('(').ok_or("expected '('")?;
    let close = s.rfind(')').ok_or("expected ')'")?;
    if close < open {
        return Err("unbalanced parentheses".into());
    }
    let name = s[..open].trim().to_string();
    let args = &s[open + 1..close];
    let ret = s[close + 1..]
        .trim()
        .strip_prefix(':')
        .ok_or("expected ': ReturnType'")?
        .trim();
    let params = split_args(args)
        .into_iter()
        .map(param)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(MethodDef {
        name,
        params,
        ret: (ret != "void").then(|| TypeRef::parse(ret)),
    })
}

/// Splits on commas that are outside JSON strings, brackets and braces.
fn split_args(s: &str) -> Vec<&str> {
    let mut out = vec![];
    let (mut depth, mut in_str, mut start, mut prev) = (0i32, false, 0, ' ');
    for (i, ch) in s.char_indices() {
        match ch {
            '"' if prev != '\\' => in_str = !in_str,
            '[' | '{' if !in_str => depth += 1,
            ']' | '}' if !in_str => depth -= 1,
            ',' if !in_str && depth == 0 => {
                out.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
        prev = ch;
    }
    if !s[start..].trim().is_empty() {
        out.push(s[start..].trim());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_item_kind() {
        let m = parse(
            "module demo 1.2.3\n\
             # comment\n\
             class Foo extends MediaElement abstract\n\
             \x20 ctor mediaPipeline: MediaPipeline\n\
             \x20 ctor size?: int = 5 # trailing comment\n\
             \x20 prop tag: String = \"a # b\" final readonly\n\
             \x20 method go(a: String, b?: String[] = [\"x,y\"]): int64\n\
             \x20 event Boom\n\
             enum Color RED GREEN\n\
             struct Pt extends Base\n\
             \x20 field x: double\n\
             event Boom extends Media\n\
             \x20 field why: String\n",
        )
        .unwrap();
        assert_eq!((m.name.as_str(), m.version.as_str()), ("demo", "1.2.3"));
        let c = &m.classes[0];
        assert!(c.is_abstract);
        assert_eq!(c.prefix, "demo");
        assert_eq!(c.ctor.as_ref().unwrap().len(), 2);
        assert_eq!(c.props[0].default, Some(Value::from("a # b")));
        assert!(c.props[0].is_final && c.props[0].read_only);
        assert_eq!(
            c.methods[0].params[1].default,
            Some(serde_json::json!(["x,y"]))
        );
        assert_eq!(c.methods[0].ret, Some(TypeRef::parse("int64")));
        assert_eq!(m.types.len(), 2);
        assert_eq!(m.events[0].fields[0].name, "why");
    }

    #[test]
    fn a_parent_qualified_with_kurento_or_the_modules_prefix_is_read_short() {
        let m = parse(
            "module demo 1.0.0\n\
             class A extends kurento.Filter\n\
             class B extends demo.A\n\
             class C extends chroma.ChromaFilter\n\
             class D extends Filter\n\
             struct S extends kurento.Tag\n\
             event E extends kurento.Media\n",
        )
        .unwrap();
        let parents: Vec<_> = m.classes.iter().map(|c| c.extends.as_deref()).collect();
        assert_eq!(
            parents,
            [
                Some("Filter"),
                Some("A"),
                Some("chroma.ChromaFilter"),
                Some("Filter")
            ]
        );
        assert!(matches!(&m.types[0], TypeDef::Struct { extends: Some(e), .. } if e == "Tag"));
        assert_eq!(m.events[0].extends.as_deref(), Some("Media"));
        // The built-ins' own prefix is kurento too.
        let core = parse("module core 1.0.0\nclass X extends kurento.MediaObject\n").unwrap();
        assert_eq!(core.classes[0].extends.as_deref(), Some("MediaObject"));
    }

    #[test]
    fn reports_errors_with_lines() {
        let e = parse("module x\nbogus thing\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(parse("class A\n").is_err());
        assert!(parse("module x\nclass A\n  method f(: void\n").is_err());
    }
}
