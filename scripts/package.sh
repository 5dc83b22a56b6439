#!/usr/bin/env bash
# Builds Fluo's Debian package (make package) from the release binary and PointerDetectorFilter's
# WebAssembly module, with dpkg-deb: the files in packaging/deb/ are the package's, as they are,
# and Depends is packaging/deb/depends plus what dpkg-shlibdeps finds the binary links.
#   scripts/package.sh [OUT]   (default target/package)
# Writes OUT/fluo_VERSION_ARCH.deb, and OUT/container/ (the .deb, the Dockerfile and its entry
# point scripts: the context `podman build` / `docker build` takes, docs/operations.md).
# FLUO_BIN and FLUO_WASM_DIR name other builds of the binary and of the modules.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$ROOT/target/package}"
BIN="${FLUO_BIN:-$ROOT/target/release/fluo}"
WASM_DIR="${FLUO_WASM_DIR:-$ROOT/target/wasm32-unknown-unknown/wasm-module}"
# WebAssembly modules shipped in /usr/lib/fluo/modules: built file -> installed name.
MODULES=(fluo_module_pointerdetector.wasm:pointerdetector.wasm)
DEB="$ROOT/packaging/deb"

for f in "$BIN" "${MODULES[@]%%:*}"; do
  [ "$f" = "$BIN" ] || f="$WASM_DIR/$f"
  if [ ! -f "$f" ]; then
    echo "package: $f is missing (make package builds it)" >&2
    exit 1
  fi
done

MAINTAINER="${DEB_MAINTAINER:-Fluo maintainers <maintainers@users.noreply.r-seed-63097596.example>}"
VERSION="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"$/\1/p' "$ROOT/Cargo.toml")"
ARCH="$(dpkg --print-architecture)"
[ -n "$VERSION" ] || {
  echo "package: no version in Cargo.toml's [workspace.package]" >&2
  exit 1
}

stage="$(mktemp -d "${TMPDIR:-/tmp}/fluo-package.XXXXXX")"
trap 'rm -rf "$stage"' EXIT
pkg="$stage/fluo"
install -d "$pkg/DEBIAN" "$pkg/usr/bin" "$pkg/usr/lib/fluo/modules" "$pkg/lib/systemd/system" \
  "$pkg/etc/fluo" "$pkg/etc/default" "$pkg/usr/share/doc/fluo"

# The binary without its debug information (line tables: the binary in target/release/ has
# them) but with its symbol table, so that a panic's backtrace (RUST_BACKTRACE=1) names the
# functions: about 6 MB more installed, 0.8 MB more in the .deb, than --strip-unneeded.
objcopy --strip-debug --remove-section=.comment --remove-section=.note "$BIN" "$pkg/usr/bin/fluo"
chmod 0755 "$pkg/usr/bin/fluo"
for m in "${MODULES[@]}"; do
  install -m 0644 "$WASM_DIR/${m%%:*}" "$pkg/usr/lib/fluo/modules/${m#*:}"
done
install -m 0644 "$DEB/fluo.service" "$pkg/lib/systemd/system/fluo.service"
install -m 0644 "$DEB/kurento.conf.json" "$pkg/etc/fluo/kurento.conf.json"
install -m 0644 "$DEB/fluo.default" "$pkg/etc/default/fluo"
install -m 0644 "$DEB/copyright" "$pkg/usr/share/doc/fluo/copyright"
for doc in README.md docs/operations.md docs/compatibility.md; do
  gzip -9n <"$ROOT/$doc" >"$pkg/usr/share/doc/fluo/$(basename "$doc").gz"
done
commit="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
date="$(git -C "$ROOT" log -1 --format=%aD 2>/dev/null || date -R)"
printf 'fluo (%s) unstable; urgency=medium\n\n  * Built from commit %s.\n\n -- %s  %s\n' \
  "$VERSION" "$commit" "$MAINTAINER" "$date" | gzip -9n >"$pkg/usr/share/doc/fluo/changelog.gz"
for s in postinst prerm postrm; do
  install -m 0755 "$DEB/$s" "$pkg/DEBIAN/$s"
done
printf '/etc/fluo/kurento.conf.json\n/etc/default/fluo\n' >"$pkg/DEBIAN/conffiles"

# The shared libraries the binary links, as Depends (dpkg-shlibdeps reads a source package's
# debian/control: a minimal one).
mkdir -p "$stage/src/debian"
printf 'Source: fluo\n\nPackage: fluo\nArchitecture: any\n' >"$stage/src/debian/control"
shlibs="$(cd "$stage/src" && dpkg-shlibdeps -O "$pkg/usr/bin/fluo" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')"
[ -n "$shlibs" ] || {
  echo "package: dpkg-shlibdeps found no libraries for $BIN" >&2
  exit 1
}
runtime="$(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$DEB/depends" | paste -sd, | sed 's/,/, /g')"
size="$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)"
cat >"$pkg/DEBIAN/control" <<EOF
Package: fluo
Version: $VERSION
Architecture: $ARCH
Maintainer: $MAINTAINER
Installed-Size: $size
Depends: adduser, $shlibs, $runtime
Recommends: ca-certificates
Section: video
Priority: optional
Description: media server speaking the Kurento Protocol (a KMS 7 replacement)
 Fluo serves the Kurento Protocol (JSON-RPC 2.0 over WebSocket on
 ws://HOST:8888/kurento), so applications written with the official
 kurento-client run against it unchanged: WebRTC and RTP endpoints, players,
 recorders, hubs, filters, with GStreamer for decoding and encoding.
 .
 The package runs it as the systemd service fluo, as the unprivileged user fluo;
 its settings are in /etc/fluo/kurento.conf.json and /etc/default/fluo.
EOF

# Every file dated as the commit, so that a build from the same commit gives the same package.
epoch="$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || date +%s)"
find "$pkg" -exec touch --no-dereference --date="@$epoch" {} +
mkdir -p "$OUT"
# One package in OUT (a build of another version leaves none behind for the tests to pick).
rm -f "$OUT"/fluo_*.deb
deb="$OUT/fluo_${VERSION}_${ARCH}.deb"
SOURCE_DATE_EPOCH="$epoch" dpkg-deb --root-owner-group -Zxz --build "$pkg" "$deb" >/dev/null
echo "package: $deb ($(du -h "$deb" | cut -f1))"

# The container image's build context: the Dockerfile installs this .deb.
ctx="$OUT/container"
rm -rf "$ctx"
mkdir -p "$ctx"
cp "$deb" "$ctx/"
install -m 0644 "$ROOT/packaging/container/Dockerfile" "$ctx/Dockerfile"
install -m 0755 "$ROOT/packaging/container/entrypoint.sh" "$ROOT/packaging/container/healthchecker.sh" "$ctx/"
echo "package: container build context in $ctx"
