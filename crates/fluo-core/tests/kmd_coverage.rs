//! Coverage of Kurento's interface definitions: every class, method, property, event and
//! complex type named in the kmd files is known to Fluo's model with the same shape.
//!
//! Reads the kmd files from `FLUO_KMD_DIR`, else from `shared/kurento-api/kmd` in a folder
//! above the repository, else from the npm modules of `tests/compat` (`kurento-client-core`,
//! `-elements`, `-filters`, which `scripts/deps.sh test` installs). When none is there the
//! test fails under `CI=true` and otherwise says what it did not check.
use fluo_api::model::{TypeDef, TypeRef};
use fluo_api::Model;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The kmd files to check, and where they were found; `Err` says where they were looked for.
fn kmd_files() -> Result<(Vec<PathBuf>, String), String> {
    let list = |dir: &Path| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().ends_with(".kmd.json"))
            .collect();
        v.sort();
        v
    };
    if let Ok(d) = std::env::var("FLUO_KMD_DIR") {
        let files = list(Path::new(&d));
        return match files.is_empty() {
            true => Err(format!("no .kmd.json in FLUO_KMD_DIR={d}")),
            false => Ok((files, d)),
        };
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let repo = repo.canonicalize().unwrap_or(repo);
    for up in repo.ancestors().skip(1) {
        let d = up.join("shared/kurento-api/kmd");
        let files = list(&d);
        if !files.is_empty() {
            return Ok((files, d.display().to_string()));
        }
    }
    let npm = repo.join("tests/compat/node_modules");
    let files: Vec<PathBuf> = ["core", "elements", "filters"]
        .iter()
        .flat_map(|m| list(&npm.join(format!("kurento-client-{m}/src"))))
        .collect();
    if files.len() == 3 {
        return Ok((files, npm.display().to_string()));
    }
    Err(format!(
        "no kmd files: FLUO_KMD_DIR unset, no shared/kurento-api/kmd above {}, no kurento-client \
         modules in {} (scripts/deps.sh test installs them)",
        repo.display(),
        npm.display()
    ))
}

/// A check that cannot run here: a failure under `CI=true`, else said and skipped (the rule
/// of fluo_testkit::skip, which this crate's tests do not depend on).
fn unavailable(what: &str, why: &str) {
    let ci = std::env::var("CI")
        .is_ok_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes"));
    if ci {
        panic!("NOT CHECKED under CI=true: {what}: {why}");
    }
    let line = format!("SKIPPED: {what} not checked: {why} (with CI=true this fails)");
    // Straight to the process's stderr: the test harness captures println!/eprintln! of
    // tests that pass, and this line must be seen.
    let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("{line}\n").as_bytes());
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
    let (files, dir) = match kmd_files() {
        Ok(x) => x,
        Err(why) => {
            unavailable("Kurento's interface definitions against Fluo's model", &why);
            return;
        }
    };
    let m = Model::builtin();
    let mut checked = 0usize;
    let mut problems = vec![];
    for path in files {
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
                        // A default where the kmd requires the parameter is compatible (clients
                        // send it anyway): KMS 7.3.0's getUsedCpu requires `interval`, later
                        // versions give it 1000, as Fluo does.
                        let want = params(&meth["params"]);
                        let fits = have.len() == want.len()
                            && have
                                .iter()
                                .zip(&want)
                                .all(|(h, w)| h.0 == w.0 && h.1 == w.1 && (h.2 || !w.2));
                        if !fits || ret != d.ret {
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
    println!("kmd coverage: {checked} items checked in {dir}");
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
