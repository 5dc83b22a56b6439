//! Kurento object-id formats.
//!
//! `<uuid>_kurento.MediaPipeline`, `<parent id>/<uuid>_kurento.<Class>`, and the fixed
//! `manager_ServerManager`.

/// The ServerManager singleton's id.
pub const SERVER_MANAGER_ID: &str = "manager_ServerManager";

/// Builds an object id from a fresh uuid, the module prefix, the class and the parent's id.
pub fn object_id(uuid: &str, prefix: &str, class: &str, parent: Option<&str>) -> String {
    match parent {
        Some(p) => format!("{p}/{uuid}_{prefix}.{class}"),
        None => format!("{uuid}_{prefix}.{class}"),
    }
}

/// The class name at the end of an id (`..._kurento.PassThrough` -> `PassThrough`).
pub fn class_of(id: &str) -> Option<&str> {
    let last = id.rsplit('/').next()?;
    let (_, qualified) = last.rsplit_once('_')?;
    qualified.rsplit_once('.').map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let p = object_id("u1", "kurento", "MediaPipeline", None);
        assert_eq!(p, "u1_kurento.MediaPipeline");
        let e = object_id("u2", "kurento", "PassThrough", Some(&p));
        assert_eq!(e, "u1_kurento.MediaPipeline/u2_kurento.PassThrough");
        assert_eq!(class_of(&e), Some("PassThrough"));
        assert_eq!(class_of("garbage"), None);
    }
}
