//! What a worker does to itself before it takes a job, in its main thread before any other
//! thread exists (capabilities and Landlock domains are per thread and inherited by the threads
//! started later): close every descriptor but its sockets, drop every capability, set
//! no_new_privs, restrict file access with Landlock, refuse dangerous system calls with seccomp.

use crate::proto::{SandboxPolicy, SandboxReport};
use crate::spawn::MEDIA_FD;
use std::io;
use std::path::{Path, PathBuf};

/// Closes every descriptor above the media socket; returns how many there were.
pub fn close_inherited_fds() -> u32 {
    let first = MEDIA_FD + 1;
    let open = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
                .filter(|fd| *fd >= first)
                .count()
        })
        .unwrap_or(0);
    // SAFETY: close_range closes descriptors this process owns and nothing refers to: no
    // Rust value holds one (the process has just started, and read_dir's is closed above).
    let r = unsafe { libc::syscall(libc::SYS_close_range, first as u32, u32::MAX, 0u32) };
    if r < 0 {
        // Kernels before 5.9: close them one by one.
        for fd in first..1024 {
            // SAFETY: as above.
            unsafe { libc::close(fd) };
        }
    }
    // The directory handle counted itself (it took the lowest free number, above the media fd).
    open.saturating_sub(1) as u32
}

/// The Landlock ABI version of the running kernel (0: none or disabled).
pub fn landlock_abi() -> u8 {
    const LANDLOCK_CREATE_RULESET_VERSION: u32 = 1;
    // SAFETY: landlock_create_ruleset with a null attribute and the VERSION flag only returns
    // the ABI version (or -1); it creates nothing.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    v.clamp(0, 255) as u8
}

/// Enters the sandbox `policy` describes; what held is reported.
pub fn enter(policy: &SandboxPolicy) -> SandboxReport {
    let mut report = SandboxReport::default();
    if policy.drop_privileges {
        match drop_privileges() {
            Ok(()) => report.privileges_dropped = true,
            Err(e) => tracing::warn!("worker: could not drop privileges: {e}"),
        }
    }
    if policy.landlock {
        match landlock(policy) {
            Ok((abi, full)) => {
                report.landlock_abi = abi;
                report.landlock_full = full;
            }
            Err(e) => tracing::warn!("worker: Landlock not applied: {e}"),
        }
    }
    if policy.seccomp {
        match seccomp::install() {
            Ok(installed) => report.seccomp = installed,
            Err(e) => tracing::warn!("worker: seccomp filter not installed: {e}"),
        }
    }
    report
}

fn prctl(op: i32, a: u64) -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(op, a, 0u64, 0u64, 0u64) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Empties the bounding, ambient, effective, permitted and inheritable capability sets and sets
/// no_new_privs: nothing the worker executes can gain a privilege back.
fn drop_privileges() -> io::Result<()> {
    let last: u64 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40);
    for cap in 0..=last {
        // Needs CAP_SETPCAP; without it the bounding set cannot be lowered, and the capset
        // below still leaves the process without any capability.
        if let Err(e) = prctl(libc::PR_CAPBSET_DROP, cap) {
            if e.raw_os_error() != Some(libc::EPERM) && e.raw_os_error() != Some(libc::EINVAL) {
                return Err(e);
            }
        }
    }
    // SAFETY: integer arguments only.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as u64,
            0u64,
            0u64,
            0u64,
        )
    };
    #[repr(C)]
    struct CapHeader {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct CapData {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let mut header = CapHeader {
        version: VERSION_3,
        pid: 0,
    };
    let data = [CapData {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: capset reads a v3 header and two data structs, both valid for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    prctl(libc::PR_SET_NO_NEW_PRIVS, 1)
}

/// Files and directories of the system a GStreamer worker reads: libraries and plugins, the
/// dynamic loader's cache, name resolution and TLS roots (http(s) and rtsp players), fonts
/// (text overlays), time zones, CPU information.
const SYSTEM_READ: &[&str] = &[
    "/usr",
    "/lib",
    "/lib64",
    "/lib32",
    "/bin",
    "/sbin",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/fonts",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/gnutls",
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/nsswitch.conf",
    "/etc/gai.conf",
    "/etc/services",
    "/etc/protocols",
    "/etc/passwd",
    "/etc/group",
    "/etc/mime.types",
    "/var/cache/fontconfig",
    "/proc/self",
    "/proc/cpuinfo",
    "/proc/meminfo",
    "/sys/devices/system/cpu",
    "/dev/urandom",
    "/dev/random",
];

/// Device files a worker may also write.
const SYSTEM_WRITE: &[&str] = &["/dev/null", "/dev/zero"];

/// GStreamer's registry cache directory (it rewrites the registry when plugins changed).
fn gst_cache_dir() -> Option<PathBuf> {
    if let Some(r) =
        std::env::var_os("GST_REGISTRY_1_0").or_else(|| std::env::var_os("GST_REGISTRY"))
    {
        return Path::new(&r).parent().map(Path::to_path_buf);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("gstreamer-1.0"))
}

fn existing<'a>(paths: impl IntoIterator<Item = &'a Path>) -> Vec<PathBuf> {
    paths
        .into_iter()
        .filter(|p| p.exists())
        .map(Path::to_path_buf)
        .collect()
}

/// Restricts file access to the system's read-only paths, the policy's read and write paths
/// and GStreamer's cache; TCP binds are refused (a worker never listens); signals and abstract
/// Unix sockets outside the worker's own domain are out of reach (ABI 6). Returns the ABI in
/// force and whether everything asked is enforced.
fn landlock(policy: &SandboxPolicy) -> Result<(u8, bool), landlock::RulesetError> {
    use landlock::{
        path_beneath_rules, Access, AccessFs, AccessNet, Ruleset, RulesetAttr, RulesetCreatedAttr,
        RulesetStatus, Scope, ABI,
    };
    let abi = ABI::V6;
    let read = AccessFs::from_read(abi);
    let all = AccessFs::from_all(abi);
    let mut read_paths = existing(SYSTEM_READ.iter().map(Path::new));
    read_paths.extend(existing(policy.read_paths.iter().map(PathBuf::as_path)));
    let mut write_paths = existing(SYSTEM_WRITE.iter().map(Path::new));
    write_paths.extend(existing(policy.write_paths.iter().map(PathBuf::as_path)));
    if let Some(cache) = gst_cache_dir() {
        let _ = std::fs::create_dir_all(&cache);
        write_paths.extend(existing([cache.as_path()]));
    }
    let status = Ruleset::default()
        .handle_access(all)?
        .handle_access(AccessNet::BindTcp)?
        .scope(Scope::from_all(abi))?
        .create()?
        .add_rules(path_beneath_rules(&read_paths, read))?
        .add_rules(path_beneath_rules(&write_paths, all))?
        .restrict_self()?;
    let full = status.ruleset == RulesetStatus::FullyEnforced;
    let enforced = status.ruleset != RulesetStatus::NotEnforced;
    Ok((if enforced { landlock_abi() } else { 0 }, full))
}

#[cfg(target_arch = "x86_64")]
mod seccomp {
    //! A deny-list filter: the system calls a media worker never makes (debugging other
    //! processes, loading kernel code, mounting, changing namespaces, the clock or the
    //! keyring, stealing descriptors) fail with EPERM, and signals go only to the worker
    //! itself (kernels without Landlock's signal scoping included); a foreign architecture's
    //! calls (x32, i386) kill the process. Everything else GStreamer's plugins may do stays
    //! allowed: an allow-list would break on the first plugin that uses a call not foreseen.

    use std::io;

    const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;

    const DENIED: &[libc::c_long] = &[
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_pidfd_getfd,
        libc::SYS_kcmp,
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_userfaultfd,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_chroot,
        libc::SYS_fsopen,
        libc::SYS_fsmount,
        libc::SYS_fspick,
        libc::SYS_move_mount,
        libc::SYS_open_tree,
        libc::SYS_mount_setattr,
        libc::SYS_setns,
        libc::SYS_unshare,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_reboot,
        libc::SYS_acct,
        libc::SYS_quotactl,
        libc::SYS_syslog,
        libc::SYS_vhangup,
        libc::SYS_settimeofday,
        libc::SYS_clock_settime,
        libc::SYS_clock_adjtime,
        libc::SYS_adjtimex,
        libc::SYS_iopl,
        libc::SYS_ioperm,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_open_by_handle_at,
        libc::SYS_name_to_handle_at,
        libc::SYS_fanotify_init,
        libc::SYS_personality,
        libc::SYS_tkill,
        libc::SYS_pidfd_send_signal,
    ];

    fn stmt(code: u32, k: u32) -> libc::sock_filter {
        libc::sock_filter {
            code: code as u16,
            jt: 0,
            jf: 0,
            k,
        }
    }

    fn jump(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
        libc::sock_filter {
            code: code as u16,
            jt,
            jf,
            k,
        }
    }

    /// A block letting system call `nr` through only when its first argument (a pid, compared
    /// as the kernel reads it: the low 32 bits) is one of `allowed`; EPERM otherwise. Other
    /// calls skip the block with the call number still loaded.
    fn first_arg_in(nr: libc::c_long, allowed: &[u32]) -> Vec<libc::sock_filter> {
        let ld = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
        let jeq = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
        let ret = libc::BPF_RET | libc::BPF_K;
        let n = allowed.len();
        let mut b = vec![jump(jeq, nr as u32, 0, (n + 3) as u8)];
        // seccomp_data.args[0], low half (little-endian)
        b.push(stmt(ld, 16));
        for (k, v) in allowed.iter().enumerate() {
            // On a match, skip the remaining compares and the EPERM: land on ALLOW.
            b.push(jump(jeq, *v, (n - k) as u8, 0));
        }
        b.push(stmt(ret, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32));
        b.push(stmt(ret, libc::SECCOMP_RET_ALLOW));
        b
    }

    /// The filter program for the process `pid`.
    pub(super) fn program(pid: u32) -> Vec<libc::sock_filter> {
        let ld = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
        let jeq = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
        let jge = libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K;
        let ret = libc::BPF_RET | libc::BPF_K;
        let eperm = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
        let mut p = vec![
            // seccomp_data.arch
            stmt(ld, 4),
            jump(jeq, AUDIT_ARCH_X86_64, 1, 0),
            stmt(ret, libc::SECCOMP_RET_KILL_PROCESS),
            // seccomp_data.nr
            stmt(ld, 0),
            jump(jge, X32_SYSCALL_BIT, 0, 1),
            stmt(ret, libc::SECCOMP_RET_KILL_PROCESS),
        ];
        // Signals: to itself (or its own process group, 0) only.
        p.extend(first_arg_in(libc::SYS_kill, &[pid, 0]));
        p.extend(first_arg_in(libc::SYS_tgkill, &[pid]));
        p.extend(first_arg_in(libc::SYS_rt_sigqueueinfo, &[pid]));
        p.extend(first_arg_in(libc::SYS_rt_tgsigqueueinfo, &[pid]));
        for nr in DENIED {
            p.push(jump(jeq, *nr as u32, 0, 1));
            p.push(stmt(ret, eperm));
        }
        p.push(stmt(ret, libc::SECCOMP_RET_ALLOW));
        p
    }

    /// Installs the filter on every thread of the process (needs no_new_privs or
    /// CAP_SYS_ADMIN).
    pub(super) fn install() -> io::Result<bool> {
        const SECCOMP_FILTER_FLAG_TSYNC: libc::c_ulong = 1;
        // SAFETY: integer arguments only.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1u64, 0u64, 0u64, 0u64) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let filter = program(std::process::id());
        let prog = libc::sock_fprog {
            len: filter.len() as u16,
            filter: filter.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: the kernel copies the program during the call; `filter` outlives it.
        let r = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                SECCOMP_FILTER_FLAG_TSYNC,
                &prog as *const libc::sock_fprog,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(true)
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod seccomp {
    /// No filter for this architecture yet.
    pub(super) fn install() -> std::io::Result<bool> {
        Ok(false)
    }
}
