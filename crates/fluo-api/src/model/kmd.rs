//! Renders a module of the model as kmd-shaped JSON (names, types, flags and defaults; Fluo's
//! model carries no documentation text), for `ServerManager.getKmd`.

use super::{Model, ParamDef, TypeDef};
use serde_json::{json, Map, Value};

fn param(p: &ParamDef) -> Value {
    let mut o = Map::new();
    o.insert("name".into(), Value::from(p.name.clone()));
    o.insert("type".into(), Value::from(p.ty.to_string()));
    if p.optional {
        o.insert("optional".into(), Value::from(true));
    }
    if let Some(d) = &p.default {
        o.insert("defaultValue".into(), d.clone());
    }
    Value::Object(o)
}

pub(super) fn render(model: &Model, module: &str) -> Option<String> {
    let m = model.module(module)?;
    let classes: Vec<Value> = m
        .classes
        .iter()
        .filter_map(|n| model.class(n))
        .map(|c| {
            let mut o = Map::new();
            o.insert("name".into(), json!(c.name));
            if let Some(e) = &c.extends {
                o.insert("extends".into(), json!(e));
            }
            if c.is_abstract {
                o.insert("abstract".into(), json!(true));
            }
            if let Some(ctor) = &c.ctor {
                o.insert(
                    "constructor".into(),
                    json!({"params": ctor.iter().map(param).collect::<Vec<_>>()}),
                );
            }
            let props: Vec<Value> = c
                .props
                .iter()
                .map(|p| {
                    let mut v = Map::new();
                    v.insert("name".into(), json!(p.name));
                    v.insert("type".into(), json!(p.ty.to_string()));
                    if p.is_final {
                        v.insert("final".into(), json!(true));
                    }
                    if p.read_only {
                        v.insert("readOnly".into(), json!(true));
                    }
                    if let Some(d) = &p.default {
                        v.insert("defaultValue".into(), d.clone());
                    }
                    Value::Object(v)
                })
                .collect();
            o.insert("properties".into(), Value::Array(props));
            let methods: Vec<Value> = c
                .methods
                .iter()
                .map(|meth| {
                    let mut v = Map::new();
                    v.insert("name".into(), json!(meth.name));
                    v.insert(
                        "params".into(),
                        Value::Array(meth.params.iter().map(param).collect()),
                    );
                    if let Some(r) = &meth.ret {
                        v.insert("return".into(), json!({"type": r.to_string()}));
                    }
                    Value::Object(v)
                })
                .collect();
            o.insert("methods".into(), Value::Array(methods));
            o.insert("events".into(), json!(c.events));
            Value::Object(o)
        })
        .collect();
    let types: Vec<Value> = m
        .types
        .iter()
        .filter_map(|n| model.type_def(n))
        .map(|t| match t {
            TypeDef::Enum { name, values, .. } => {
                json!({"name": name, "typeFormat": "ENUM", "values": values})
            }
            TypeDef::Struct {
                name,
                extends,
                fields,
                ..
            } => {
                let mut o = Map::new();
                o.insert("name".into(), json!(name));
                o.insert("typeFormat".into(), json!("REGISTER"));
                if let Some(e) = extends {
                    o.insert("extends".into(), json!(e));
                }
                o.insert(
                    "properties".into(),
                    Value::Array(fields.iter().map(param).collect()),
                );
                Value::Object(o)
            }
        })
        .collect();
    let events: Vec<Value> = m
        .events
        .iter()
        .filter_map(|n| model.event(n))
        .map(|e| {
            let mut o = Map::new();
            o.insert("name".into(), json!(e.name));
            if let Some(x) = &e.extends {
                o.insert("extends".into(), json!(x));
            }
            o.insert(
                "properties".into(),
                Value::Array(e.fields.iter().map(param).collect()),
            );
            Value::Object(o)
        })
        .collect();
    Some(
        json!({
            "name": m.name,
            "version": m.version,
            "kurentoVersion": m.version,
            "remoteClasses": classes,
            "complexTypes": types,
            "events": events,
        })
        .to_string(),
    )
}
