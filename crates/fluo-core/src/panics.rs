//! Panics in the server's processes (the server and its media workers).
//!
//! A panic in Fluo's own code is a bug: the process ends at once ([`abort_outside_contain`],
//! installed by the `fluo` binary) rather than serve on with a dead engine task or media
//! thread; a supervisor (systemd, the server for its workers) restarts it. A panic in a
//! module's code, which the module host calls through [`contain`], unwinds to the host
//! instead: the host stops that module's element (an Error event) and everything else goes
//! on. The release profile unwinds for this (`panic = "unwind"`); the hook gives every other
//! panic the abort it had.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};

thread_local! {
    /// How many [`contain`] calls this thread is inside.
    static CONTAINED: Cell<u32> = const { Cell::new(0) };
}

/// Runs `f` (a module's code), catching a panic in it. The caller must leave no state of its
/// own half-changed by the panic (the module hosts drop the instance that panicked).
pub fn contain<R>(f: impl FnOnce() -> R) -> std::thread::Result<R> {
    CONTAINED.with(|c| c.set(c.get() + 1));
    let r = catch_unwind(AssertUnwindSafe(f));
    CONTAINED.with(|c| c.set(c.get() - 1));
    r
}

/// Whether this thread is inside [`contain`] now.
pub fn contained() -> bool {
    CONTAINED.with(|c| c.get() > 0)
}

/// The process's panic hook from now on: a panic inside [`contain`] unwinds to it quietly
/// (the host logs it); any other prints as usual, then aborts the process.
pub fn abort_outside_contain() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if contained() {
            return;
        }
        default(info);
        std::process::abort();
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_contained_panic_is_caught_and_the_count_goes_back() {
        assert!(!contained());
        let r = contain(|| {
            assert!(contained());
            let inner = contain(|| panic!("inner"));
            assert!(inner.is_err());
            assert!(contained(), "still inside the outer contain");
            7
        });
        assert_eq!(r.ok(), Some(7));
        assert!(!contained());
        assert!(contain(|| panic!("outer")).is_err());
        assert!(!contained());
    }
}
