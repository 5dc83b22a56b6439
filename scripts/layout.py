#!/usr/bin/env python3
"""Layout check (make layout, part of make test).

Rules (docs/architecture.md, "Layout"):
  * a Rust source file in the media plane (crates fluo-rtc, fluo-gst, fluo-sfu, fluo-egress,
    fluo-worker) has at most 800 lines, any other Rust source file at most 1500;
  * a function in the media plane's library code (src/, test modules and tests.rs files excluded) has at most 80
    lines, from its `fn` line to its closing brace.
Known breaches are listed in scripts/layout-exceptions.txt with their size when listed: an
entry may shrink but never grow, and an entry that no longer breaches must be deleted, so the
list only ever gets shorter. Exit status 1 with one line per breach.
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEDIA = ("crates/fluo-rtc/", "crates/fluo-gst/", "crates/fluo-sfu/", "crates/fluo-egress/",
         "crates/fluo-worker/")
FILE_MEDIA, FILE_OTHER, FN_MAX = 800, 1500, 80
FN_RE = re.compile(r'^(\s*)(?:pub(?:\([^)]*\))?\s+)?(?:const\s+)?(?:async\s+)?(?:unsafe\s+)?'
                   r'(?:extern\s+"[^"]*"\s+)?fn\s+(\w+)')


def rust_files():
    for top in ("crates", "bench", "fuzz"):
        for d, dirs, files in os.walk(os.path.join(ROOT, top)):
            dirs[:] = [x for x in dirs if x not in ("target", "corpus", "artifacts")]
            for f in files:
                if f.endswith(".rs"):
                    yield os.path.relpath(os.path.join(d, f), ROOT)


def functions(lines):
    """(name, first line number, length) of each function with a body, rustfmt layout.

    Code after a line `#[cfg(test)]` (a tests module) is skipped."""
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.strip() == "#[cfg(test)]":
            return
        m = FN_RE.match(line)
        if not m:
            i += 1
            continue
        indent, name = m.group(1), m.group(2)
        j = i
        # the signature ends at the line that opens the body or ends a declaration
        while j < len(lines) and not re.search(r'[{;]\s*$', lines[j]):
            j += 1
        if j >= len(lines) or lines[j].rstrip().endswith(";"):
            i = j + 1
            continue
        if lines[j].rstrip().endswith("{}") or re.search(r'\{.*\}\s*$', lines[j]):
            yield name, i + 1, j - i + 1
            i = j + 1
            continue
        k = j + 1
        while k < len(lines) and lines[k].rstrip() != indent + "}":
            k += 1
        yield name, i + 1, k - i + 1
        i += 1  # nested functions are checked too


def breaches():
    out = {}
    for path in sorted(rust_files()):
        with open(os.path.join(ROOT, path), encoding="utf-8") as f:
            lines = f.read().split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        media = path.startswith(MEDIA)
        limit = FILE_MEDIA if media else FILE_OTHER
        if len(lines) > limit:
            out[path] = (len(lines), limit)
        if media and "/src/" in path and not path.endswith("/tests.rs") and "/tests/" not in path:
            for name, line, n in functions(lines):
                if n > FN_MAX:
                    out[f"{path}::{name}"] = (n, FN_MAX)
    return out


def main():
    listed = {}
    exc = os.path.join(ROOT, "scripts", "layout-exceptions.txt")
    with open(exc, encoding="utf-8") as f:
        for raw in f:
            raw = raw.split("#", 1)[0].strip()
            if raw:
                key, size = raw.rsplit(None, 1)
                listed[key] = int(size)
    found = breaches()
    bad = []
    for key, (n, limit) in sorted(found.items()):
        if key not in listed:
            bad.append(f"{key}: {n} lines (limit {limit})")
        elif n > listed[key]:
            bad.append(f"{key}: {n} lines, grew from {listed[key]} (limit {limit}; it may only shrink)")
    for key in sorted(set(listed) - set(found)):
        bad.append(f"{key}: within its limit now (or gone): delete its line from scripts/layout-exceptions.txt")
    if "--list" in sys.argv:
        for key, (n, limit) in sorted(found.items()):
            print(f"{key} {n}")
        return 0
    for b in bad:
        print("layout:", b)
    print(f"layout: {len(found)} known breaches listed, {len(bad)} problems"
          if bad else f"layout: OK ({len(found)} known breaches, none grew)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
