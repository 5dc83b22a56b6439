//! Jobs for tests and benches only (feature `test-jobs`): media echo, crashes of every kind,
//! unbounded allocation, a hang, CPU burn, a probe of the worker's own sandbox, and a
//! GStreamer pipeline run to its end.

use crate::media::PacketRef;
use crate::worker::{Job, JobCtx, Registry};
use std::io::Write;
use std::time::Duration;

/// Live `test.echo` jobs of this worker: what it reports as its pipelines in its pongs.
static ECHOES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Registers `test.echo`, `test.crash` and `test.probe`; the worker's gauges count its live
/// echo jobs as pipelines (and three elements each).
pub fn register(reg: &mut Registry) {
    reg.gauges(|| {
        let n = ECHOES.load(std::sync::atomic::Ordering::Relaxed);
        crate::WorkerGauges {
            pipelines: n,
            elements: 3 * n,
            recorded_bytes: 0,
        }
    });
    reg.register("test.echo", |ctx, _| {
        ECHOES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Box::new(Echo { ctx }) as Box<dyn Job>)
    });
    reg.register("test.crash", |ctx, params| {
        // A crash at start when asked: the start request gets the worker's death.
        match params {
            b"abort" => std::process::abort(),
            b"segv" => segfault(),
            _ => {}
        }
        Ok(Box::new(Crash {
            ctx,
            stall_media: false,
        }) as Box<dyn Job>)
    });
    reg.register("test.probe", |_, _| Ok(Box::new(Probe) as Box<dyn Job>));
    reg.register("test.gst", |_, params| {
        // Initialised here, inside the sandbox (the real worker does it in its start hook;
        // the other test jobs need no GStreamer, and the probe counts descriptors).
        gstreamer::init().map_err(|e| format!("GStreamer did not initialise: {e}"))?;
        let desc = std::str::from_utf8(params).map_err(|_| "not UTF-8".to_string())?;
        Ok(Box::new(Gst {
            desc: desc.to_owned(),
        }) as Box<dyn Job>)
    });
}

/// Runs a gst-launch pipeline description to its end: `run` answers once it reached end of
/// stream, or with GStreamer's error.
struct Gst {
    desc: String,
}

impl Job for Gst {
    fn call(&mut self, method: &str, _args: &[u8]) -> Result<Vec<u8>, String> {
        use gstreamer as gst;
        use gstreamer::prelude::*;
        if method != "run" {
            return Err(format!("unknown method '{method}'"));
        }
        let p = gst::parse::launch(&self.desc)
            .map_err(|e| e.to_string())?
            .downcast::<gst::Pipeline>()
            .map_err(|_| "not a pipeline".to_string())?;
        let bus = p.bus().ok_or("no bus")?;
        let started = p.set_state(gst::State::Playing);
        let msg = bus.timed_pop_filtered(
            gst::ClockTime::from_seconds(20),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        );
        let _ = p.set_state(gst::State::Null);
        match msg.as_ref().map(|m| m.view()) {
            Some(gst::MessageView::Eos(_)) => Ok(Vec::new()),
            Some(gst::MessageView::Error(e)) => Err(e.error().to_string()),
            _ if started.is_err() => Err("the pipeline did not start".into()),
            _ => Err("no end of stream within 20 s".into()),
        }
    }
}

/// Sends back every packet it gets, as its own output; answers `ping` with its arguments.
struct Echo {
    ctx: JobCtx,
}

impl Job for Echo {
    fn call(&mut self, method: &str, args: &[u8]) -> Result<Vec<u8>, String> {
        match method {
            "ping" => Ok(args.to_vec()),
            "fail" => {
                self.ctx.fail("asked to fail");
                Ok(Vec::new())
            }
            "emit" => {
                self.ctx.emit("Echoed", args.to_vec());
                Ok(Vec::new())
            }
            _ => Err(format!("unknown method '{method}'")),
        }
    }

    fn packet(&mut self, pkt: &PacketRef<'_>) {
        self.ctx.send_packet(pkt);
    }

    fn keyframe_request(&mut self) {
        self.ctx.request_keyframe();
    }

    fn end_of_stream(&mut self) {
        self.ctx.end_of_stream();
    }

    fn stop(&mut self) {
        ECHOES.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Dies on request: `abort`, `segv`, `alloc` (without bound on a thread of its own, reporting
/// each 16 MiB as an `allocated` event with the MiB so far), `hang` (stops answering), `exit`
/// (status 7), or burns CPU: `spin` for the CPU milliseconds given as a little-endian u64.
/// `stall_media` makes its next packet stop the worker's media thread (a stuck decoder).
struct Crash {
    ctx: JobCtx,
    /// Set by `stall_media`: the next packet stops the worker's media thread for good.
    stall_media: bool,
}

fn segfault() -> ! {
    // A real fault: a store to a page mapped without any access.
    // SAFETY: mmap of a fresh anonymous page; the store through it faults (SIGSEGV) by
    // design, which is this job's purpose.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        std::ptr::write_volatile(p.cast::<u8>(), 1);
    }
    std::process::abort()
}

impl Job for Crash {
    fn call(&mut self, method: &str, args: &[u8]) -> Result<Vec<u8>, String> {
        match method {
            "abort" => std::process::abort(),
            "segv" => segfault(),
            "exit" => std::process::exit(7),
            "hang" => loop {
                std::thread::sleep(Duration::from_secs(3600));
            },
            "alloc" => {
                // On a thread of its own, so that the worker keeps answering pings: the death
                // must come from the memory limit, not from the watchdog.
                let ctx = self.ctx.clone();
                std::thread::spawn(move || {
                    let chunk = 16usize << 20;
                    let mut mib: u64 = 0;
                    loop {
                        let mut v = Vec::<u8>::with_capacity(chunk);
                        for i in (0..chunk).step_by(4096) {
                            // SAFETY: within the vector's capacity.
                            unsafe { v.as_mut_ptr().add(i).write_volatile(1) };
                        }
                        std::mem::forget(v);
                        mib += 16;
                        ctx.emit("allocated", mib.to_le_bytes().to_vec());
                    }
                });
                Ok(Vec::new())
            }
            "spin" => {
                // Burns this much CPU time (not wall time: the machine may be shared).
                let ms = args
                    .try_into()
                    .map(u64::from_le_bytes)
                    .map_err(|_| "spin takes a u64".to_string())?;
                let start = thread_cpu();
                let mut x: u64 = 1;
                while thread_cpu() - start < Duration::from_millis(ms) {
                    for _ in 0..10_000 {
                        x = std::hint::black_box(
                            x.wrapping_mul(6364136223846793005).wrapping_add(1),
                        );
                    }
                }
                Ok(x.to_le_bytes().to_vec())
            }
            "stall_media" => {
                self.stall_media = true;
                Ok(Vec::new())
            }
            "ping" => Ok(args.to_vec()),
            _ => Err(format!("unknown method '{method}'")),
        }
    }

    fn packet(&mut self, _pkt: &PacketRef<'_>) {
        if self.stall_media {
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
    }
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the struct.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Reports what the worker can see and do.
struct Probe;

fn status_field(name: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(name))
                .map(|l| l[name.len()..].trim().to_string())
        })
        .unwrap_or_default()
}

fn errno_of(r: i64) -> String {
    if r < 0 {
        let e = std::io::Error::last_os_error();
        format!("errno {}", e.raw_os_error().unwrap_or(0))
    } else {
        "ok".into()
    }
}

impl Job for Probe {
    fn call(&mut self, method: &str, args: &[u8]) -> Result<Vec<u8>, String> {
        let path = || std::str::from_utf8(args).map_err(|_| "path is not UTF-8".to_string());
        match method {
            // key=value lines
            "report" => {
                let mut fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
                    .map_err(|e| e.to_string())?
                    .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                    .collect();
                fds.sort_unstable();
                // The last one is read_dir's own handle.
                fds.pop();
                // SAFETY: getppid and kill(pid, 0) only query.
                let ppid = unsafe { libc::getppid() };
                // SAFETY: signal 0 checks permission only.
                let kill = errno_of(unsafe { libc::kill(ppid, 0) } as i64);
                let mut byte = [0u8; 1];
                let local = libc::iovec {
                    iov_base: byte.as_mut_ptr().cast(),
                    iov_len: 1,
                };
                let remote = libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 1,
                };
                // SAFETY: reads at most one byte into `byte`; address 0 of the parent at worst
                // gives EFAULT.
                let vm = errno_of(
                    unsafe { libc::process_vm_readv(ppid, &local, 1, &remote, 1, 0) } as i64,
                );
                let env_secret = std::env::var_os("FLUO_AUTH_TOKEN").is_some()
                    || std::env::var_os("FLUO_TEST_SECRET").is_some();
                let report = format!(
                    "fds={}\ncap_eff={}\ncap_bnd={}\nno_new_privs={}\nseccomp={}\nkill_parent={}\nvm_read_parent={}\nsecret_env={}\nrlimit_data={}\n",
                    fds.iter().map(|f| f.to_string()).collect::<Vec<_>>().join(","),
                    status_field("CapEff:"),
                    status_field("CapBnd:"),
                    status_field("NoNewPrivs:"),
                    status_field("Seccomp:"),
                    kill,
                    vm,
                    env_secret,
                    rlimit_data(),
                );
                Ok(report.into_bytes())
            }
            "read" => std::fs::read(path()?).map_err(|e| e.kind().to_string()),
            "write" => std::fs::File::create(path()?)
                .and_then(|mut f| f.write_all(b"probe"))
                .map(|_| Vec::new())
                .map_err(|e| e.kind().to_string()),
            _ => Err(format!("unknown method '{method}'")),
        }
    }
}

fn rlimit_data() -> String {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_DATA, &mut l) } < 0 {
        return "?".into();
    }
    if l.rlim_cur == libc::RLIM_INFINITY {
        "unlimited".into()
    } else {
        l.rlim_cur.to_string()
    }
}
