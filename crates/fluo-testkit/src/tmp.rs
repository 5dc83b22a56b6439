//! Temporary folders for tests: each is removed with all it holds when its guard is dropped,
//! at the end of the test that made it, whether the test passed or panicked. `make test` runs
//! the suites with `TMPDIR` set to a fresh folder under `target/` and fails when anything is
//! left in it.

use std::path::Path;

/// A fresh folder under the temporary directory (`TMPDIR`), named `fluo-{name}-` and a random
/// suffix; removed when dropped. It derefs to its [`Path`].
#[derive(Debug)]
pub struct TmpDir(tempfile::TempDir);

/// Makes a [`TmpDir`] (panics when the temporary directory cannot be written: a test cannot
/// go on without it).
pub fn dir(name: &str) -> TmpDir {
    let d = tempfile::Builder::new()
        .prefix(&format!("fluo-{name}-"))
        .tempdir()
        .unwrap_or_else(|e| panic!("a temporary folder for {name}: {e}"));
    TmpDir(d)
}

impl TmpDir {
    /// The folder.
    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

impl std::ops::Deref for TmpDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        self.0.path()
    }
}

impl AsRef<Path> for TmpDir {
    fn as_ref(&self) -> &Path {
        self.0.path()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_folder_goes_when_its_guard_is_dropped_even_by_a_panic() {
        let d = super::dir("tmp-self-test");
        std::fs::create_dir_all(d.join("a/b")).expect("sub folder");
        std::fs::write(d.join("a/b/f"), b"x").expect("file");
        let kept = d.to_path_buf();
        assert!(kept
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("fluo-tmp-self-test-"));
        drop(d);
        assert!(!kept.exists(), "{} is left", kept.display());

        let panicked = std::thread::spawn(|| {
            let d = super::dir("tmp-self-test-panic");
            std::fs::write(d.join("f"), b"x").expect("file");
            let path = d.to_path_buf();
            std::panic::panic_any(path);
        })
        .join()
        .expect_err("the thread panicked");
        let path = panicked.downcast::<std::path::PathBuf>().expect("the path");
        assert!(!path.exists(), "{} is left after a panic", path.display());
    }
}
