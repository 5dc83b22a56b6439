#!/usr/bin/env bash
# make package-test, the container image: imports the Debian 12 base made by
# tests/package/base-rootfs.sh (Docker Hub is not reachable here; a normal build starts FROM
# debian:12; the base's tar is removed once imported), builds packaging/container/Dockerfile on
# it with podman (--isolation chroot, a storage of its own in a temporary folder: overlay where
# the kernel allows it, else vfs), runs the image with the host's network as the official KMS
# image is run, moved to free ports on 127.0.0.1 by environment variables, with
# KMS_MIN_PORT/KMS_MAX_PORT, KMS_UID, and the variables its entry point does not take
# (KMS_EXTERNAL_IPV4=auto, KMS_MTU, KMS_PEM_CERTIFICATE_*), a host folder mounted on
# /var/lib/fluo/recordings; checks the health check, the configuration's mode, and drives it
# with the official kurento-client (tests/package/drive.js); stops it (SIGTERM, status 0); its
# log must show every media worker started, no panic, no colour code. Then boots the image with
# systemd and drives fluo.service the same way, purges and installs the package under it. Runs
# in a mount namespace of its own (podman's and runc's fixed paths on tmpfs) and removes
# everything.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CTX="$ROOT/target/package/container"
say() { echo "container-test: $*"; }
fail() {
  echo "container-test: FAILED: $*" >&2
  exit 1
}
# shellcheck source=tests/package/common.sh
. "$ROOT/tests/package/common.sh"
cant_run() {
  if [ "${CI:-}" = true ]; then fail "cannot run: $*"; fi
  echo "SKIPPED: the container image not checked: $*"
  exit 0
}

[ "$(id -u)" -eq 0 ] || cant_run "rootful podman is needed (run as root)"
for tool in podman node ffprobe mmdebstrap; do
  command -v "$tool" >/dev/null || cant_run "$tool is missing (scripts/deps.sh test installs it)"
done
ls "$CTX"/fluo_*.deb >/dev/null 2>&1 || fail "no build context in $CTX (make package)"

# What podman and the OCI runtimes write outside the paths they are given: podman 4.3 its blob
# information cache in /var/lib/containers/cache whatever --root says, runc and crun their
# containers' state in /run/runc and /run/crun. The test runs in a mount namespace of its own
# where those are empty tmpfs folders, gone with it; the folders it had to create as mount
# points are removed after, and every path must then be as it was.
ISOLATED=(/var/lib/containers/cache /run/runc /run/crun)
if [ "${FLUO_CONTAINER_TEST_NS:-}" != 1 ]; then
  command -v unshare >/dev/null || cant_run "unshare is missing (util-linux)"
  watched=("${ISOLATED[@]}" /var/lib/containers)
  before="$(state_of "${watched[@]}")"
  created=()
  for p in "${ISOLATED[@]}"; do
    top="$p"
    while [ ! -e "$(dirname "$top")" ]; do top="$(dirname "$top")"; done
    if [ ! -e "$top" ]; then
      mkdir -p "$p"
      created=("$top" "${created[@]}")
    fi
  done
  status=0
  FLUO_CONTAINER_TEST_NS=1 unshare --mount --propagation private -- "$0" "$@" || status=$?
  for top in "${created[@]}"; do
    # Empty: what was written there went to the namespace's tmpfs.
    find "$top" -depth -type d -exec rmdir {} + || { echo "container-test: FAILED: $top is not empty: $(find "$top")" >&2; status=1; }
  done
  after="$(state_of "${watched[@]}")"
  if [ "$before" != "$after" ]; then
    echo "container-test: FAILED: paths outside the test's own changed: $(diff <(echo "$before") <(echo "$after") | grep '^[<>]' | paste -sd' ')" >&2
    status=1
  fi
  exit "$status"
fi
for p in "${ISOLATED[@]}"; do
  mount -t tmpfs -o mode=0700,size=64m "fluo-test-$(basename "$p")" "$p" || fail "mount a tmpfs on $p"
done

base_tar="$("$ROOT/tests/package/base-rootfs.sh" wait)" || fail "no base image (tests/package/base-rootfs.sh)"

# podman's own files under TMPDIR (make test's tmp-check watches it), removed at the end.
work="$(mktemp -d "${TMPDIR:-/tmp}/fluo-container-test.XXXXXX")"
tag="$$"
name="fluo-test-$tag"
# podman refuses a run root path over 50 characters: that one is in /run.
run_root="$(mktemp -d /run/fluo-test-podman.XXXXXX)"
store=(--root "$work/storage" --runroot "$run_root" --tmpdir "$work/podman-tmp")
runtime=()
pm() { TMPDIR="$work/tmp" podman "${store[@]}" --storage-driver "$driver" "${runtime[@]}" "$@"; }
cleanup() {
  local status=$?
  if [ -n "${driver:-}" ]; then
    pm rm -af -t 0 >/dev/null 2>&1 || true
    pm rmi -af >/dev/null 2>&1 || true
  fi
  # Mounts podman may have left (overlay layers, the container's shm).
  grep -oE " ($work|$run_root)/[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$work" "$run_root"
  exit "$status"
}
trap cleanup EXIT
mkdir -p "$work/tmp" "$work/podman-tmp" "$work/recordings"

# PACKAGE_TEST_STORAGE=vfs tries the fallback.
driver="${PACKAGE_TEST_STORAGE:-overlay}"
if ! pm info >"$work/info.log" 2>&1; then
  say "overlay storage is not available here ($(tail -n 1 "$work/info.log")): vfs"
  rm -rf "$work/storage" "${run_root:?}"/*
  driver=vfs
  pm info >"$work/info.log" 2>&1 || fail "podman info: $(cat "$work/info.log")"
fi

t0=$SECONDS
pm import "$base_tar" "localhost/fluo-test-base:$tag" >"$work/import.log" 2>&1 ||
  fail "podman import $base_tar: $(tail -n 5 "$work/import.log")"
# The tar (about 900 MB) is in the storage now: removed at once.
peak_disk="$(du -sm "$(dirname "$base_tar")" "$work" | awk '{ t += $1 } END { print t }')"
"$ROOT/tests/package/base-rootfs.sh" clean
t1=$SECONDS
pm build --isolation chroot --network host --format docker --pull=never \
  --build-arg "BASE=localhost/fluo-test-base:$tag" -t "localhost/fluo-test:$tag" "$CTX" \
  >"$work/build.log" 2>&1 || fail "podman build: $(tail -n 30 "$work/build.log")"
t2=$SECONDS
storage_mb="$(du -sm "$work" | cut -f1)"
say "storage $driver; base imported in $((t1 - t0)) s (base tar and storage: $peak_disk MB), image built in $((t2 - t1)) s (storage: $storage_mb MB)"
# podman gives a container 1048576 open files and processes; without CAP_SYS_RESOURCE (in a
# sandbox, as on the CI machines) raising the limits fails, so the container gets the test's
# own (processes at most pid_max: above it setrlimit is refused there too).
nofile="$(ulimit -Hn)"
nproc="$(ulimit -Hu)"
pid_max="$(cat /proc/sys/kernel/pid_max)"
if [ "$nproc" = unlimited ] || [ "$nproc" -gt "$pid_max" ]; then nproc="$pid_max"; fi
[ "$nofile" != unlimited ] || nofile=1048576
limits=(--ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc")
# Debian's podman runs containers with crun, which refuses cgroups in hybrid mode with a
# controller on the cgroup2 side (as on the CI machines: "drop all controllers from
# cgroupv2"); runc takes them.
for rt in crun runc; do
  command -v "$rt" >/dev/null || continue
  if pm --runtime "$rt" run --rm "${limits[@]}" --network host "localhost/fluo-test-base:$tag" true \
    >"$work/runtime.log" 2>&1; then
    runtime=(--runtime "$rt")
    break
  fi
  say "$rt cannot run a container here: $(tail -n 1 "$work/runtime.log")"
done
[ "${#runtime[@]}" -gt 0 ] || fail "no OCI runtime (crun, runc) can run a container here"
say "runtime ${runtime[1]}, limits ${limits[*]}"
health="$(pm image inspect --format '{{json .HealthCheck}}' "localhost/fluo-test:$tag")" || fail "podman image inspect"
grep -q healthchecker.sh <<<"$health" || fail "the image has no health check: $health"
[ "$(pm image inspect --format '{{.Config.Entrypoint}}' "localhost/fluo-test:$tag")" = "[/entrypoint.sh]" ] ||
  fail "the image's entry point is not /entrypoint.sh"
grep -q '8888/tcp' <<<"$(pm image inspect --format '{{.Config.ExposedPorts}}' "localhost/fluo-test:$tag")" ||
  fail "the image does not expose 8888"

# A user id no account has, as KMS_UID; the mounted folder is that user's.
kms_uid=41234
chown "$kms_uid:$kms_uid" "$work/recordings"
min_port=42000
max_port=42099
# No health check timers: podman runs them with systemd, which is not here (the check itself is
# run below).
pm run -d --name "$name" --network host --no-healthcheck "${limits[@]}" \
  -v "$work/recordings:/var/lib/fluo/recordings" \
  -e FLUO_BIND=127.0.0.1 -e FLUO_PORT=0 -e FLUO_HTTP_PORT=0 -e KMS_NETWORK_INTERFACES=lo \
  -e KMS_MIN_PORT="$min_port" -e KMS_MAX_PORT="$max_port" -e KMS_UID="$kms_uid" \
  -e KMS_EXTERNAL_IPV4=auto -e KMS_MTU=1400 -e KMS_TURN_URL= \
  -e KMS_PEM_CERTIFICATE_RSA=/etc/kurento/rsa.pem -e KMS_PEM_CERTIFICATE_ECDSA=/etc/kurento/ecdsa.pem \
  "localhost/fluo-test:$tag" >/dev/null || fail "podman run"
port=
for _ in $(seq 300); do
  logs="$(pm logs "$name" 2>&1)"
  port="$(sed -n 's|.*listening on ws://127.0.0.1:\([0-9]*\)/kurento.*|\1|p' <<<"$logs" | head -n 1)"
  [ -n "$port" ] && break
  [ "$(pm inspect --format '{{.State.Running}}' "$name")" = true ] || fail "the container exited: $logs"
  sleep 0.1
done
[ -n "$port" ] || fail "the server did not listen within 30 s: $logs"
grep -q 'KMS_EXTERNAL_IPV4=auto is not supported' <<<"$logs" || fail "no word on KMS_EXTERNAL_IPV4=auto: $logs"
grep -q 'KMS_MTU is not supported' <<<"$logs" || fail "no word on KMS_MTU: $logs"
for v in KMS_PEM_CERTIFICATE_RSA KMS_PEM_CERTIFICATE_ECDSA; do
  grep -q "$v is not supported" <<<"$logs" || fail "no word on $v: $logs"
done
grep -q "starting Fluo as user fluo, uid $kms_uid" <<<"$logs" || fail "KMS_UID was not taken: $logs"
status="$(pm exec "$name" cat /proc/1/status)"
grep -q '^Uid:[[:space:]]*'"$kms_uid"'[[:space:]]' <<<"$status" || fail "PID 1 is not the server as uid $kms_uid: $(grep -E 'Name|Uid' <<<"$status")"
grep -q '^CapBnd:[[:space:]]*0*$' <<<"$status" && grep -q '^CapEff:[[:space:]]*0*$' <<<"$status" ||
  fail "the server has capabilities: $(grep Cap <<<"$status")"
# The configuration (it may hold secrets) is root:fluo 0640, its group renumbered with fluo's.
conf="$(pm exec "$name" stat -c '%U:%G %g %a' /etc/fluo/kurento.conf.json)"
[ "$conf" = "root:fluo $kms_uid 640" ] || fail "/etc/fluo/kurento.conf.json in the container: $conf"
say "running (ws://127.0.0.1:$port/kurento) as PID 1, uid $kms_uid, no capabilities; configuration $conf"
pm exec -e FLUO_PORT="$port" "$name" /healthchecker.sh || fail "the health check failed"
if pm exec -e FLUO_PORT=1 "$name" /healthchecker.sh; then fail "the health check passed with no server"; fi

node "$ROOT/tests/package/drive.js" --url "ws://127.0.0.1:$port/kurento" \
  --record-dir /var/lib/fluo/recordings --host-dir "$work/recordings" \
  --ports "$min_port-$max_port" --owner "$kms_uid" ||
  fail "kurento-client against the container; its log: $(pm logs "$name" 2>&1 | tail -n 40)"

pm stop -t 15 "$name" >/dev/null || fail "podman stop"
code="$(pm inspect --format '{{.State.ExitCode}}' "$name")"
[ "$code" = 0 ] || fail "the container exited with $code after SIGTERM: $(pm logs "$name" 2>&1 | tail -n 20)"
logs="$(pm logs "$name" 2>&1)"
grep -q 'stopped' <<<"$logs" || fail "the server did not say it stopped"
# Every media worker started at its first try, no panic; plain lines (the container's output
# is not a terminal: the entry point sets NO_COLOR and GST_DEBUG_NO_COLOR, GST_DEBUG is 2).
check_server_log "container-test: the container" "$logs"
say "served kurento-client as uid $kms_uid, media ports in $min_port-$max_port, health check, stopped cleanly (exit 0)"
pm rm "$name" >/dev/null

# --- the unit under systemd ---
# systemd is not PID 1 on the CI machines, but the image holds it (GStreamer's dependencies pull
# it in): booted with systemd as PID 1, the image runs fluo.service itself, enabled by the
# package's postinst, with every directive of its sandbox. A drop-in moves it to 127.0.0.1 and
# free ports. Privileged: systemd sets up the unit's namespaces.
sd="fluo-test-systemd-$tag"
printf '[Service]\nEnvironment=FLUO_BIND=127.0.0.1 FLUO_PORT=0 FLUO_HTTP_PORT=0 KMS_NETWORK_INTERFACES=lo\n' \
  >"$work/test.conf"
mkdir -p "$work/unit-recordings"
pm run -d --name "$sd" --network host --no-healthcheck --privileged --systemd=always "${limits[@]}" \
  -v "$work/test.conf:/etc/systemd/system/fluo.service.d/test.conf:ro" \
  -v "$work/unit-recordings:/var/lib/fluo/recordings" -v "$CTX:/context:ro" \
  --entrypoint /lib/systemd/systemd "localhost/fluo-test:$tag" >/dev/null || fail "podman run (systemd)"
in_sd() { pm exec "$sd" "$@"; }
port=
for _ in $(seq 300); do
  journal="$(in_sd journalctl -u fluo --no-pager -o cat 2>/dev/null || true)"
  port="$(sed -n 's|.*listening on ws://127.0.0.1:\([0-9]*\)/kurento.*|\1|p' <<<"$journal" | head -n 1)"
  [ -n "$port" ] && break
  [ "$(pm inspect --format '{{.State.Running}}' "$sd")" = true ] || fail "the systemd container exited: $(pm logs "$sd" 2>&1 | tail -n 20)"
  sleep 0.1
done
[ -n "$port" ] || fail "fluo.service did not listen within 30 s: $(in_sd systemctl status fluo --no-pager 2>&1)"
pid="$(in_sd systemctl show fluo -p MainPID --value)"
status="$(in_sd cat "/proc/$pid/status")"
[ "$(in_sd ps -o user= -p "$pid")" = fluo ] || fail "fluo.service's process does not run as fluo"
grep -q '^CapEff:[[:space:]]*0*$' <<<"$status" || fail "fluo.service has capabilities: $(grep Cap <<<"$status")"
grep -q '^NoNewPrivs:[[:space:]]*1$' <<<"$status" || fail "fluo.service is without no_new_privs"
grep -q '^Seccomp:[[:space:]]*2$' <<<"$status" || fail "fluo.service has no system call filter"
# Its mount namespace: the system read-only, /var/lib/fluo writable.
[[ "$(in_sd nsenter -t "$pid" -m findmnt -n -o OPTIONS -T /usr)" == ro,* ]] || fail "/usr is writable for fluo.service"
[[ "$(in_sd nsenter -t "$pid" -m findmnt -n -o OPTIONS -T /var/lib/fluo/recordings)" == rw,* ]] ||
  fail "/var/lib/fluo/recordings is not writable for fluo.service"
uid="$(in_sd id -u fluo)"
chown "$uid" "$work/unit-recordings"
say "fluo.service runs under systemd as fluo (pid $pid): no capabilities, no_new_privs, seccomp, /usr read-only"

node "$ROOT/tests/package/drive.js" --url "ws://127.0.0.1:$port/kurento" \
  --record-dir /var/lib/fluo/recordings --host-dir "$work/unit-recordings" --owner "$uid" ||
  fail "kurento-client against fluo.service; its journal: $(in_sd journalctl -u fluo --no-pager -o cat | tail -n 40)"
in_sd systemctl stop fluo || fail "systemctl stop fluo"
result="$(in_sd systemctl show fluo -p Result -p ExecMainStatus | sort | paste -sd' ')"
[ "$result" = "ExecMainStatus=0 Result=success" ] || fail "fluo.service stopped with $result"
journal="$(in_sd journalctl -u fluo --no-pager -o cat)"
# Its media workers started at the first try (a first start: no GStreamer registry cache yet),
# with their own sandbox under the unit's system call filter.
check_server_log "container-test: fluo.service" "$journal"
say "fluo.service served kurento-client (media workers sandboxed), systemctl stop: $result"

# The maintainer scripts' systemd side: purge and install again while systemd runs.
in_sd systemctl start fluo || fail "systemctl start fluo"
in_sd env DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq fluo >"$work/purge.log" 2>&1 ||
  fail "apt-get purge under systemd: $(cat "$work/purge.log")"
state="$(in_sd systemctl show fluo -p ActiveState -p LoadState | sort | paste -sd' ')"
[ "$state" = "ActiveState=inactive LoadState=not-found" ] || fail "after purge under systemd: $state"
if in_sd getent passwd fluo >/dev/null; then fail "purge under systemd left the fluo user"; fi
deb="$(cd "$CTX" && ls fluo_*.deb)"
in_sd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "/context/$deb" >"$work/install.log" 2>&1 ||
  fail "apt-get install under systemd: $(cat "$work/install.log")"
state="$(in_sd systemctl show fluo -p ActiveState -p UnitFileState | sort | paste -sd' ')"
[ "$state" = "ActiveState=active UnitFileState=enabled" ] || fail "after install under systemd: $state"
say "under systemd, purge stopped and removed fluo.service and the user; install enabled and started it"
