//! A worker's least privilege, checked from inside it by the probe job. Alone in its test
//! binary: it sets an environment variable and leaks a descriptor on purpose.

mod common;

use common::*;
use fluo_worker::{JobError, SupervisorEvent};
use std::path::Path;

fn field<'a>(report: &'a str, key: &str) -> &'a str {
    report
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key} in {report}"))
}

fn own_caps_include_setpcap() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(str::trim)
        .unwrap();
    u64::from_str_radix(eff, 16).unwrap() & (1 << 8) != 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_runs_with_least_privilege() {
    // A secret in the server's environment, and a descriptor the server leaks (no
    // close-on-exec): neither reaches the worker.
    std::env::set_var("FLUO_TEST_SECRET", "s3cret");
    // SAFETY: open(2) of /dev/null; the descriptor is closed at the end of the test.
    let leaked = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY) };
    assert!(leaked > 4);

    let dir = std::env::temp_dir().join(format!("fluo-worker-sandbox-{}", std::process::id()));
    let (read, write, outside) = (dir.join("read"), dir.join("write"), dir.join("outside"));
    for d in [&read, &write, &outside] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(read.join("a.txt"), b"a").unwrap();
    std::fs::write(outside.join("b.txt"), b"b").unwrap();

    let mut cfg = config(1);
    cfg.sandbox.read_paths = vec![read.clone()];
    cfg.sandbox.write_paths = vec![write.clone()];
    let (sup, events) = start(cfg);
    let probe = sup
        .start_job_async(1, "test.probe", vec![], Rec::new())
        .await
        .unwrap();
    let report = String::from_utf8(probe.call_async("report", vec![]).await.unwrap()).unwrap();
    eprintln!("{report}");
    let sandbox = events
        .lock()
        .unwrap()
        .iter()
        .find_map(|e| match e {
            SupervisorEvent::Started { sandbox, .. } => Some(sandbox.clone()),
            _ => None,
        })
        .unwrap();
    eprintln!("{sandbox:?}");

    assert_eq!(
        field(&report, "fds"),
        "0,1,2,3,4",
        "only stdio and its two sockets"
    );
    assert_eq!(
        sandbox.inherited_fds_closed, 0,
        "the leaked descriptor was close-on-exec in the worker's spawn: nothing to close"
    );
    assert_eq!(field(&report, "secret_env"), "false");
    assert_eq!(field(&report, "cap_eff"), "0000000000000000");
    if own_caps_include_setpcap() {
        assert_eq!(field(&report, "cap_bnd"), "0000000000000000");
    }
    assert_eq!(field(&report, "no_new_privs"), "1");
    assert!(sandbox.privileges_dropped);
    // seccomp: mode 2 (filter); reading the server's memory is refused (EPERM), not EFAULT.
    assert_eq!(field(&report, "seccomp"), "2");
    assert!(sandbox.seccomp);
    assert_eq!(
        field(&report, "vm_read_parent"),
        format!("errno {}", libc::EPERM)
    );
    // Signals to any other process (the server) are refused (seccomp, and Landlock's signal
    // scope from ABI 6).
    assert_eq!(
        field(&report, "kill_parent"),
        format!("errno {}", libc::EPERM)
    );

    let abi = fluo_worker::sandbox::landlock_abi();
    if abi == 0 {
        assert!(
            std::env::var_os("CI").is_none(),
            "Landlock is not available on this kernel: file access is not restricted"
        );
        eprintln!("SKIPPED: the Landlock checks (no Landlock on this kernel)");
    } else {
        assert_eq!(sandbox.landlock_abi, abi);
        assert_eq!(sandbox.landlock_full, abi >= 6);
        let call = |m: &'static str, p: &Path| {
            let probe = &probe;
            let p = p.to_str().unwrap().as_bytes().to_vec();
            async move { probe.call_async(m, p).await.map(|_| ()) }
        };
        let denied = Err(JobError::Failed("permission denied".into()));
        assert_eq!(call("read", &read.join("a.txt")).await, Ok(()));
        assert_eq!(call("read", &outside.join("b.txt")).await, denied);
        assert_eq!(call("write", &write.join("c.txt")).await, Ok(()));
        assert_eq!(std::fs::read(write.join("c.txt")).unwrap(), b"probe");
        assert_eq!(call("write", &read.join("d.txt")).await, denied);
        assert_eq!(call("write", &outside.join("e.txt")).await, denied);
        assert!(!outside.join("e.txt").exists());
        // The server's own files (its config, its keys) are outside every allowed path.
        assert_eq!(
            call(
                "read",
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("Cargo.toml")
                    .as_path()
            )
            .await,
            denied
        );
    }
    sup.shutdown(std::time::Duration::from_secs(5)).await;
    // SAFETY: closes the descriptor opened above.
    unsafe { libc::close(leaked) };
    let _ = std::fs::remove_dir_all(&dir);
}
