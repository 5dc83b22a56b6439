//! Checks JSON values against model types, the way KMS unmarshals them: every failure is a
//! Kurento error (40001 MARSHALL_ERROR, or 40003 for an unknown `__module__.__type__`).

use super::{Model, ParamDef, Prim, TypeDef, TypeRef};
use crate::error::{ErrorCode, KurentoError};
use serde_json::{Map, Value};

/// Binds named arguments to parameter definitions: checks each given value, rejects missing
/// required ones and fills in defaults. Unknown names are ignored (KMS ignores them too).
pub fn bind_params(
    model: &Model,
    defs: &[ParamDef],
    given: &Map<String, Value>,
) -> Result<Map<String, Value>, KurentoError> {
    let mut out = Map::new();
    for d in defs {
        match given.get(&d.name) {
            Some(v) if !v.is_null() => {
                out.insert(d.name.clone(), check_value(model, v, &d.ty, &d.name)?);
            }
            _ => {
                if let Some(def) = &d.default {
                    out.insert(d.name.clone(), def.clone());
                } else if !d.optional {
                    return Err(KurentoError::marshall(format!(
                        "'{}' parameter is required",
                        d.name
                    )));
                }
            }
        }
    }
    Ok(out)
}

/// Checks one value against a type and returns it normalised (struct defaults filled in).
pub fn check_value(
    model: &Model,
    v: &Value,
    ty: &TypeRef,
    what: &str,
) -> Result<Value, KurentoError> {
    let bad = |kind: &dyn std::fmt::Display| {
        KurentoError::marshall(format!("'{what}' parameter should be a {kind}"))
    };
    match ty {
        TypeRef::Prim(p) => {
            let ok = match p {
                Prim::Boolean => v.is_boolean(),
                Prim::Int => v.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
                Prim::Int64 => v.is_i64() || v.is_u64(),
                Prim::Float | Prim::Double => v.is_number(),
                Prim::String => v.is_string(),
            };
            if ok {
                Ok(v.clone())
            } else {
                Err(bad(ty))
            }
        }
        TypeRef::Array(inner) => {
            let arr = v.as_array().ok_or_else(|| bad(ty))?;
            arr.iter()
                .map(|x| check_value(model, x, inner, what))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array)
        }
        TypeRef::Map(inner) => {
            let obj = v.as_object().ok_or_else(|| bad(ty))?;
            let mut out = Map::new();
            for (k, x) in obj {
                out.insert(k.clone(), check_value(model, x, inner, what)?);
            }
            Ok(Value::Object(out))
        }
        TypeRef::Named(name) => {
            if model.class(name).is_some() {
                // Remote objects travel as id strings; the engine resolves them. The official
                // JavaScript client sends some (a HubPort to setSource) as the serialised
                // object, whose `id` is the reference.
                return match v {
                    Value::String(_) => Ok(v.clone()),
                    Value::Object(o) => match o.get("id") {
                        Some(id @ Value::String(_)) => Ok(id.clone()),
                        _ => Err(bad(ty)),
                    },
                    _ => Err(bad(ty)),
                };
            }
            match model.type_def(name) {
                Some(TypeDef::Enum { values, .. }) => match v.as_str() {
                    Some(s) if values.iter().any(|x| x == s) => Ok(v.clone()),
                    _ => Err(KurentoError::marshall(format!(
                        "Invalid value for '{name}'"
                    ))),
                },
                Some(TypeDef::Struct { .. }) => check_struct(model, v, name, what),
                None => Err(KurentoError::new(
                    ErrorCode::UnexpectedError,
                    format!("Unknown type '{name}'"),
                )),
            }
        }
    }
}

fn check_struct(
    model: &Model,
    v: &Value,
    declared: &str,
    what: &str,
) -> Result<Value, KurentoError> {
    let obj = v.as_object().ok_or_else(|| {
        KurentoError::marshall(format!("'{what}' parameter should be a {declared}"))
    })?;
    // An explicit __type__ may name a subtype of the declared type.
    let mut actual = declared.to_string();
    if let (Some(m), Some(t)) = (
        obj.get("__module__").and_then(Value::as_str),
        obj.get("__type__").and_then(Value::as_str),
    ) {
        let known = match model.type_def(t) {
            // Two modules may declare the same struct (chroma's and pointerdetector's
            // WindowParam): either one's name is taken.
            Some(TypeDef::Struct { prefix, .. }) => {
                (prefix == m
                    || model
                        .module(m)
                        .is_some_and(|d| d.types.iter().any(|x| x == t)))
                    && derives(model, t, declared)
            }
            _ => false,
        };
        if !known {
            return Err(KurentoError::new(
                ErrorCode::UnexpectedError,
                format!("Type '{m}.{t}' is unknown or not a {declared}"),
            ));
        }
        actual = t.to_string();
    }
    let prefix = match model.type_def(&actual) {
        Some(TypeDef::Struct { prefix, .. }) => prefix.clone(),
        _ => "kurento".into(),
    };
    let mut out = Map::new();
    out.insert("__module__".into(), Value::from(prefix));
    out.insert("__type__".into(), Value::from(actual.clone()));
    for f in model.struct_fields(&actual) {
        match obj.get(&f.name) {
            Some(x) if !x.is_null() => {
                let checked = check_value(model, x, &f.ty, &f.name).map_err(|_| {
                    KurentoError::marshall(format!("'{}' property should be a {}", f.name, f.ty))
                })?;
                out.insert(f.name.clone(), checked);
            }
            _ => {
                if let Some(d) = &f.default {
                    out.insert(f.name.clone(), d.clone());
                } else if !f.optional {
                    return Err(KurentoError::marshall(format!(
                        "'{}' property should be a {}",
                        f.name, f.ty
                    )));
                }
            }
        }
    }
    Ok(Value::Object(out))
}

fn derives(model: &Model, t: &str, ancestor: &str) -> bool {
    let mut cur = Some(t.to_string());
    while let Some(name) = cur {
        if name == ancestor {
            return true;
        }
        cur = match model.type_def(&name) {
            Some(TypeDef::Struct { extends, .. }) => extends.clone(),
            _ => None,
        };
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ty(s: &str) -> TypeRef {
        TypeRef::parse(s)
    }

    #[test]
    fn primitives_enums_structs() {
        let m = Model::builtin();
        assert!(check_value(m, &json!(5), &ty("int"), "x").is_ok());
        assert!(check_value(m, &json!(5_000_000_000i64), &ty("int"), "x").is_err());
        assert!(check_value(m, &json!(1.5), &ty("int"), "x").is_err());
        assert!(check_value(m, &json!(1.5), &ty("float"), "x").is_ok());
        let e = check_value(m, &json!(5), &ty("String"), "name").unwrap_err();
        assert_eq!(e.code, ErrorCode::MarshallError);
        assert_eq!(e.message, "'name' parameter should be a String");
        assert!(check_value(m, &json!("VIDEO"), &ty("MediaType"), "t").is_ok());
        let e = check_value(m, &json!("SMELL"), &ty("MediaType"), "t").unwrap_err();
        assert_eq!(e.message, "Invalid value for 'MediaType'");
        assert!(check_value(m, &json!(["a"]), &ty("String[]"), "t").is_ok());
        assert!(check_value(m, &json!("id"), &ty("MediaElement"), "sink").is_ok());
        assert!(check_value(m, &json!(1), &ty("MediaElement"), "sink").is_err());
        // kurento-client's serialised object: its id is the reference.
        let obj = json!({"_events": {}, "_eventsCount": 3, "id": "p/x_kurento.HubPort"});
        let v = check_value(m, &obj, &ty("HubPort"), "source").unwrap();
        assert_eq!(v, json!("p/x_kurento.HubPort"));
        assert!(check_value(m, &json!({"id": 1}), &ty("HubPort"), "source").is_err());
        assert!(check_value(m, &json!({}), &ty("HubPort"), "source").is_err());
        let c = check_value(
            m,
            &json!({"candidate":"c","sdpMid":"0","sdpMLineIndex":0,"__module__":"kurento","__type__":"IceCandidate"}),
            &ty("IceCandidate"),
            "candidate",
        )
        .unwrap();
        assert_eq!(c["__type__"], "IceCandidate");
        let e = check_value(m, &json!({"sdpMid":"0"}), &ty("IceCandidate"), "c").unwrap_err();
        assert_eq!(e.code, ErrorCode::MarshallError);
        let e = check_value(
            m,
            &json!({"__module__":"kurento","__type__":"Nope"}),
            &ty("IceCandidate"),
            "c",
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::UnexpectedError);
        // defaults of optional struct fields are filled in
        let o = check_value(m, &json!({}), &ty("OfferOptions"), "options").unwrap();
        assert_eq!(o["offerToReceiveAudio"], true);
    }

    #[test]
    fn bind_applies_defaults_and_requires() {
        let m = Model::builtin();
        let sm = m.class("ServerManager").unwrap();
        let meth = m.method(sm, "getUsedCpu").unwrap();
        let b = bind_params(m, &meth.params, &Map::new()).unwrap();
        assert_eq!(b["interval"], 1000);
        let me = m.class("MediaElement").unwrap();
        let connect = m.method(me, "connect").unwrap();
        let e = bind_params(m, &connect.params, &Map::new()).unwrap_err();
        assert_eq!(e.message, "'sink' parameter is required");
    }
}
