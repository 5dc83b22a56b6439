//! `src/model/` is what the generator (tests/codegen) makes of fluo-api's model today.
//! `FLUO_CLIENT_REGEN=1 cargo test -p fluo-client --test generated` rewrites it.

mod codegen;

use std::path::Path;

#[test]
fn generated_model_is_up_to_date() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/model");
    let files = codegen::generate(fluo_api::Model::builtin());
    if std::env::var_os("FLUO_CLIENT_REGEN").is_some() {
        if dir.exists() {
            std::fs::remove_dir_all(&dir).unwrap();
        }
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in &files {
            std::fs::write(dir.join(name), text).unwrap();
        }
    }
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut want: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
    want.sort();
    assert_eq!(on_disk, want, "src/model/ has other files: FLUO_CLIENT_REGEN=1 cargo test -p fluo-client --test generated");
    for (name, text) in &files {
        let have = std::fs::read_to_string(dir.join(name)).unwrap();
        assert!(
            have == *text,
            "src/model/{name} is out of date: FLUO_CLIENT_REGEN=1 cargo test -p fluo-client --test generated"
        );
    }
}
