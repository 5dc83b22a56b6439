//! Coverage of Kurento's interface definitions: every class, method, property, event and
//! complex type named in the kmd files is known to Fluo's model with the same shape.
//!
//! Reads `../shared/kurento-api/kmd/*.kmd.json` beside the repository (or `FLUO_KMD_DIR`);
//! when the folder is absent the test says so and checks nothing.
use fluo_api::model::{TypeDef, TypeRef};
use fluo_api::Model;
use serde_json::Value;
use std::path::PathBuf;

fn kmd_dir() -> PathBuf {
    if let Ok(d) = std::env::var("FLUO_KMD_DIR") {
        return d.into();
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/kurento-api/kmd")
}

fn params(v: &Value) -> Vec<(String, String, bool)> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    (
                        p["name"].as_str().unwrap_or_default().to_string(),
                        p["type"].as_str().unwrap_or_default().to_string(),
                        p["optional"].as_bool().unwrap_or(false) || p.get("defaultValue").is_some(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn every_kmd_item_is_known_to_the_model() {
    let dir = kmd_dir();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        println!(
            "SKIPPED: no kmd folder at {} (set FLUO_KMD_DIR); nothing checked",
            dir.display()
        );
        eprintln!(
            "SKIPPED: no kmd folder at {} (set FLUO_KMD_DIR); nothing checked",
            dir.display()
        );
        return;
    };
    let m = Model::builtin();
    let mut checked = 0usize;
    let mut problems = vec![];
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.to_string_lossy().ends_with(".kmd.json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let kmd: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        for c in kmd["remoteClasses"].as_array().into_iter().flatten() {
            let name = c["name"].as_str().unwrap();
            checked += 1;
            let Some(class) = m.class(name) else {
                problems.push(format!("class {name} unknown"));
                continue;
            };
            if c["extends"].as_str() != class.extends.as_deref() {
                problems.push(format!("class {name}: extends differs"));
            }
            if c["abstract"].as_bool().unwrap_or(false) != class.is_abstract {
                problems.push(format!("class {name}: abstract differs"));
            }
            if let Some(ctor) = c.get("constructor") {
                let want = params(&ctor["params"]);
                let have: Vec<_> = class
                    .ctor
                    .iter()
                    .flatten()
                    .map(|p| (p.name.clone(), p.ty.to_string(), p.optional))
                    .collect();
                if want != have {
                    problems.push(format!("class {name}: constructor differs"));
                }
            }
            for p in c["properties"].as_array().into_iter().flatten() {
                checked += 1;
                let pn = p["name"].as_str().unwrap();
                match m.property(class, pn) {
                    None => problems.push(format!("property {name}.{pn} unknown")),
                    Some(d) => {
                        if d.ty != TypeRef::parse(p["type"].as_str().unwrap())
                            || d.read_only != p["readOnly"].as_bool().unwrap_or(false)
                            || d.is_final != p["final"].as_bool().unwrap_or(false)
                        {
                            problems.push(format!("property {name}.{pn} differs"));
                        }
                    }
                }
            }
            for meth in c["methods"].as_array().into_iter().flatten() {
                checked += 1;
                let mn = meth["name"].as_str().unwrap();
                match m.method(class, mn) {
                    None => problems.push(format!("method {name}.{mn} unknown")),
                    Some(d) => {
                        let have: Vec<_> = d
                            .params
                            .iter()
                            .map(|p| (p.name.clone(), p.ty.to_string(), p.optional))
                            .collect();
                        let ret = meth["return"]["type"].as_str().map(TypeRef::parse);
                        if have != params(&meth["params"]) || ret != d.ret {
                            problems.push(format!("method {name}.{mn} differs"));
                        }
                    }
                }
            }
            for e in c["events"].as_array().into_iter().flatten() {
                checked += 1;
                let en = e.as_str().unwrap();
                if !m.supports_event(class, en) || m.event(en).is_none() {
                    problems.push(format!("event {name}:{en} unknown"));
                }
            }
        }
        for t in kmd["complexTypes"].as_array().into_iter().flatten() {
            checked += 1;
            let tn = t["name"].as_str().unwrap();
            match (m.type_def(tn), t["typeFormat"].as_str()) {
                (Some(TypeDef::Enum { values, .. }), Some("ENUM")) => {
                    let want: Vec<String> = serde_json::from_value(t["values"].clone()).unwrap();
                    if &want != values {
                        problems.push(format!("enum {tn} values differ"));
                    }
                }
                (Some(TypeDef::Struct { fields, .. }), Some("REGISTER")) => {
                    let have: Vec<_> = fields
                        .iter()
                        .map(|p| (p.name.clone(), p.ty.to_string(), p.optional))
                        .collect();
                    if have != params(&t["properties"]) {
                        problems.push(format!("struct {tn} fields differ"));
                    }
                }
                _ => problems.push(format!("type {tn} unknown or of another kind")),
            }
        }
        for e in kmd["events"].as_array().into_iter().flatten() {
            checked += 1;
            let en = e["name"].as_str().unwrap();
            match m.event(en) {
                None => problems.push(format!("event {en} unknown")),
                Some(d) => {
                    let have: Vec<_> = d
                        .fields
                        .iter()
                        .map(|p| (p.name.clone(), p.ty.to_string(), p.optional))
                        .collect();
                    if have != params(&e["properties"])
                        || d.extends.as_deref() != e["extends"].as_str()
                    {
                        problems.push(format!("event {en} differs"));
                    }
                }
            }
        }
    }
    println!("kmd coverage: {checked} items checked in {}", dir.display());
    assert!(
        checked > 200,
        "expected the full core/elements/filters kmd set, checked {checked}"
    );
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
