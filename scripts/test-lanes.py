#!/usr/bin/env python3
"""Runs the workspace's tests as `cargo test --workspace` does, but several test binaries at
once (make test's unit step).

    scripts/test-lanes.py [CARGO_TEST_ARGS...]

Builds every test target with `cargo test --workspace --no-run` (ARGS are passed on, e.g.
`-p fluo-server --features test-elements --test modules`), then runs the test binaries,
TEST_JOBS at a time (default 3), each in its package's folder as cargo runs it, and the doc
tests last (`cargo test --doc`, only when no ARGS were given). Each binary's output is printed
in one piece when it ends, under cargo's `Running <file> (<binary>)` line, so the log reads
like cargo's; the slowest binaries and any failures are listed at the end. Exits 1 if a binary
failed (or was killed), 0 otherwise.

Why: most of the unit step's test time is waiting (real-time media, timers, child servers):
run one after another, the test binaries took about 490 s of wall time and 0.4 CPU-core.
The tests that encode or decode real video, whose assertions include real-time figures,
still run one at a time across all binaries: they hold fluo_testkit::live::serial(), a lock
across processes. Those binaries go to one lane first, the others share the rest.
TEST_JOBS=1 runs one binary at a time, as cargo does.
"""

import json
import os
import subprocess
import sys
import threading
import time


def build(args):
    """The test executables cargo built: (display name, executable, package folder)."""
    cmd = ["cargo", "test", "--no-run", "--message-format=json-render-diagnostics"]
    cmd += args or ["--workspace"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    out = []
    for line in proc.stdout:
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("reason") != "compiler-artifact" or not msg.get("executable"):
            continue
        if not msg.get("profile", {}).get("test"):
            continue
        pkg_dir = os.path.dirname(msg["manifest_path"])
        src = os.path.relpath(msg["target"]["src_path"], pkg_dir)
        kinds = msg["target"]["kind"]
        name = f"unittests {src}" if ("lib" in kinds or "bin" in kinds) else src
        out.append((name, msg["executable"], pkg_dir, msg["target"]["src_path"]))
    if proc.wait() != 0:
        sys.exit(proc.returncode)
    return out


def holds_serial(src_path):
    """Whether a test file takes the cross-process video lock (a hint for lane choice only:
    the lock itself keeps those tests apart wherever they run)."""
    try:
        with open(src_path, encoding="utf-8") as f:
            return "serial()" in f.read()
    except OSError:
        return False


class Runner:
    def __init__(self, jobs):
        self.jobs = jobs
        self.lock = threading.Lock()
        self.results = []  # (name, exe, seconds, returncode)
        self.procs = set()

    def run_one(self, name, exe, pkg_dir):
        env = dict(os.environ, CARGO_MANIFEST_DIR=pkg_dir)
        start = time.monotonic()
        proc = subprocess.Popen(
            [exe], cwd=pkg_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        with self.lock:
            self.procs.add(proc)
        output, _ = proc.communicate()
        secs = time.monotonic() - start
        rel = os.path.relpath(exe, os.getcwd())
        with self.lock:
            self.procs.discard(proc)
            sys.stdout.write(f"     Running {name} ({rel})\n")
            sys.stdout.write(output.decode("utf-8", "replace"))
            sys.stdout.write(f"     [{name}: {secs:.1f} s, exit {proc.returncode}]\n\n")
            sys.stdout.flush()
            self.results.append((name, rel, secs, proc.returncode))

    def lane(self, queues):
        while True:
            item = None
            with self.lock:
                for q in queues:
                    if q:
                        item = q.pop(0)
                        break
            if item is None:
                return
            self.run_one(*item[:3])

    def run(self, tests):
        serial, free = [], []
        for name, exe, pkg_dir, src in tests:
            (serial if holds_serial(src) else free).append((name, exe, pkg_dir, src))
        # The larger test files first: the longest binaries should not start last.
        free.sort(key=lambda t: -os.path.getsize(t[3]))
        lanes = [threading.Thread(target=self.lane, args=([serial, free],))]
        for _ in range(self.jobs - 1):
            lanes.append(threading.Thread(target=self.lane, args=([free, serial],)))
        for t in lanes:
            t.start()
        try:
            for t in lanes:
                t.join()
        except KeyboardInterrupt:
            with self.lock:
                for p in self.procs:
                    p.kill()
            raise


def main():
    args = sys.argv[1:]
    jobs = int(os.environ.get("TEST_JOBS", "3"))
    if jobs < 1:
        sys.exit("TEST_JOBS must be at least 1")
    tests = build(args)
    start = time.monotonic()
    runner = Runner(jobs)
    runner.run(tests)
    wall = time.monotonic() - start
    failed = [r for r in runner.results if r[3] != 0]
    if not args:
        doc = subprocess.run(["cargo", "test", "--workspace", "--doc"])
        if doc.returncode != 0:
            failed.append(("doc tests", "cargo test --doc", 0.0, doc.returncode))
    slowest = sorted(runner.results, key=lambda r: -r[2])[:8]
    print(f"test-lanes: {len(runner.results)} test binaries in {wall:.0f} s, {jobs} at a time;"
          " the slowest:")
    for name, _, secs, _ in slowest:
        print(f"    {secs:7.1f} s  {name}")
    if failed:
        print("test-lanes: FAILED:")
        for name, rel, _, rc in failed:
            print(f"    {name} ({rel}): exit {rc}")
        sys.exit(1)


if __name__ == "__main__":
    main()
