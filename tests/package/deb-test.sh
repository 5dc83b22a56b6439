#!/usr/bin/env bash
# make package-test, the .deb: installs target/package/fluo_*.deb with apt-get, checks its files
# (the configuration's modes among them), user and unit (systemd-analyze verify, and its
# exposure score), starts the installed server and drives it with the official kurento-client
# (tests/package/drive.js), stops it, then removes and purges the package (apt-get) and checks
# what each leaves.
# Where systemd is PID 1 the real unit runs it (postinst starts it): a runtime drop-in in
# /run/systemd/system/fluo.service.d/, written before the install, moves it to 127.0.0.1 and
# free ports, its log is the journal's. Elsewhere (the CI machines) the test starts it as the
# unit would: its user, environment file, working folder and ExecStart, moved the same way by
# environment variables, stopped by SIGTERM.
# Needs root (it installs a package); refuses to run where a fluo package or user already is.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
UNIT=/lib/systemd/system/fluo.service
DROPIN=/run/systemd/system/fluo.service.d
say() { echo "deb-test: $*"; }
fail() {
  echo "deb-test: FAILED: $*" >&2
  exit 1
}
# shellcheck source=tests/package/common.sh
. "$ROOT/tests/package/common.sh"
cant_run() {
  if [ "${CI:-}" = true ]; then fail "cannot run: $*"; fi
  echo "SKIPPED: the .deb's install test not checked: $*"
  exit 0
}

[ "$(id -u)" -eq 0 ] || cant_run "it installs a package: run as root"
for tool in apt-get dpkg runuser systemd-analyze node ffprobe pgrep readelf; do
  command -v "$tool" >/dev/null || cant_run "$tool is missing (scripts/deps.sh test installs it)"
done
mapfile -t debs < <(ls "$ROOT"/target/package/fluo_*.deb 2>/dev/null)
[ "${#debs[@]}" -eq 1 ] || fail "expected one target/package/fluo_*.deb (make package), found ${#debs[@]}"
DEB="${debs[0]}"

# One run at a time on a machine (a lock on the folder itself: no file is left behind); never
# touch an installation that is not ours.
exec 9</run/lock
flock -w 600 9 || fail "another package test holds the lock on /run/lock"
status="$(dpkg-query -W -f='${Status}' fluo 2>/dev/null || true)"
if [ -n "$status" ] && [ "$status" != "unknown ok not-installed" ]; then
  cant_run "a fluo package is on this machine ($status; the test installs and purges its own)"
fi
if getent passwd fluo >/dev/null || [ -e /var/lib/fluo ] || [ -e /etc/fluo ] || [ -e "$DROPIN" ]; then
  cant_run "a fluo user, /var/lib/fluo, /etc/fluo or $DROPIN exists here without the package"
fi
systemd=0
if [ -d /run/systemd/system ]; then systemd=1; fi

# Paths outside the package's that the test must leave as it found them: the lock file an
# earlier version took, and where systemd is not PID 1 the marker systemd-analyze writes
# (which the test removes; a running systemd rewrites its own at every daemon-reload).
watched=(/run/lock/fluo-package-test.lock)
units_load_marker=0
if [ "$systemd" -eq 0 ]; then
  watched+=(/run/systemd/systemd-units-load)
  [ -e /run/systemd/systemd-units-load ] || units_load_marker=1
fi
before="$(state_of "${watched[@]}")"

# apt-get waits for dpkg's lock (another installation may be running on the machine).
apt_get() { DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 "$@"; }

work="$(mktemp -d "${TMPDIR:-/tmp}/fluo-deb-test.XXXXXX")"
server_pid=
installed=0
cleanup() {
  local status=$?
  if [ "$installed" -eq 1 ]; then
    if [ "$systemd" -eq 1 ]; then systemctl stop fluo >/dev/null 2>&1 || true; fi
    # The server and its workers: the processes of the user this test created.
    pkill -KILL -u fluo 2>/dev/null || true
    if [ -n "$server_pid" ]; then wait "$server_pid" 2>/dev/null || true; fi
    apt_get purge -y -qq fluo >/dev/null 2>&1 || true
  fi
  # It did not exist before the test (checked above): what purge keeps is the test's.
  rm -rf /var/lib/fluo
  if [ -e "$DROPIN" ]; then
    rm -rf "$DROPIN"
    systemctl daemon-reload >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
  if [ "$units_load_marker" -eq 1 ]; then rm -f /run/systemd/systemd-units-load; fi
  if [ "$status" -eq 0 ] && [ "$(state_of "${watched[@]}")" != "$before" ]; then
    echo "deb-test: FAILED: paths outside the package changed: $(diff <(echo "$before") <(state_of "${watched[@]}") | grep '^[<>]' | paste -sd' ')" >&2
    status=1
  fi
  exit "$status"
}
trap cleanup EXIT

# Under systemd the postinst starts the service at once: moved first, to 127.0.0.1 and free
# ports (the unit's Environment=, which the environment file's variables would override: the
# package's sets none of these).
if [ "$systemd" -eq 1 ]; then
  mkdir -p "$DROPIN"
  printf '[Service]\nEnvironment=FLUO_BIND=127.0.0.1 FLUO_PORT=0 FLUO_HTTP_PORT=0 KMS_NETWORK_INTERFACES=lo\n' \
    >"$DROPIN/test.conf"
  systemctl daemon-reload
fi

# --- install ---
say "installing $(basename "$DEB")"
installed=1
apt_get install -y -qq --no-install-recommends "$DEB" >"$work/apt.log" 2>&1 ||
  fail "apt-get install: $(tail -n 20 "$work/apt.log")"
[ "$(dpkg-query -W -f='${Status}' fluo)" = "install ok installed" ] || fail "fluo is not installed"
for f in /usr/bin/fluo "$UNIT" /etc/fluo/kurento.conf.json /etc/default/fluo \
  /usr/lib/fluo/modules/pointerdetector.wasm /usr/share/doc/fluo/copyright \
  /usr/share/doc/fluo/README.md.gz /usr/share/doc/fluo/changelog.gz; do
  dpkg -S "$f" >/dev/null 2>&1 || fail "$f is not in the package"
  [ -e "$f" ] || fail "$f was not installed"
done
conffiles="$(dpkg-query -W -f='${Conffiles}' fluo | awk '{print $1}' | sort | paste -sd' ')"
[ "$conffiles" = "/etc/default/fluo /etc/fluo/kurento.conf.json" ] || fail "conffiles: $conffiles"
deps="$(dpkg-query -W -f='${Depends}' fluo)"
for p in libgstreamer1.0-0 gstreamer1.0-plugins-good gstreamer1.0-libav adduser; do
  grep -q "\\b$p\\b" <<<"$deps" || fail "Depends lacks $p: $deps"
done
/usr/bin/fluo --version >/dev/null || fail "the installed binary does not run"
# Stripped of its debug information, not of its symbols (a panic's backtrace names functions).
sections="$(readelf -S --wide /usr/bin/fluo)"
grep -q ' \.symtab ' <<<"$sections" || fail "/usr/bin/fluo has no symbol table"
if grep -q ' \.debug_info ' <<<"$sections"; then fail "/usr/bin/fluo has debug information"; fi
# The settings may hold secrets: the configuration is the service's group's only, the
# environment file root's only (dpkg-statoverride, kept across upgrades).
for m in "/etc/fluo/kurento.conf.json root:fluo 640" "/etc/default/fluo root:root 600"; do
  read -r f owner mode <<<"$m"
  [ "$(stat -c '%U:%G %a' "$f")" = "$owner $mode" ] || fail "$f is $(stat -c '%U:%G %a' "$f"), not $owner $mode"
  [ "$(dpkg-statoverride --list "$f")" = "${owner%%:*} ${owner#*:} $mode $f" ] || fail "no statoverride for $f"
done

IFS=: read -r _ _ uid gid _ home shell < <(getent passwd fluo) || fail "no fluo user"
[ "$uid" -lt 1000 ] || fail "fluo is not a system user (uid $uid)"
[ "$(getent group fluo | cut -d: -f3)" = "$gid" ] || fail "fluo's group is not fluo"
[ "$home" = /var/lib/fluo ] && [ "$shell" = /usr/sbin/nologin ] || fail "fluo's home $home, shell $shell"
[ "$(stat -c %U:%G /var/lib/fluo/recordings)" = fluo:fluo ] || fail "/var/lib/fluo/recordings is not fluo's"
say "installed: user fluo (uid $uid), conffiles $conffiles"

# --- the unit ---
verify="$(systemd-analyze verify "$UNIT" 2>&1)" || fail "systemd-analyze verify: $verify"
if grep -q 'fluo.service' <<<"$verify"; then fail "systemd-analyze verify: $verify"; fi
exposure="$(systemd-analyze security --offline=true "$UNIT" 2>&1 | sed -n 's/.*Overall exposure level for fluo.service: \([0-9.]*\).*/\1/p')"
[ -n "$exposure" ] || fail "systemd-analyze security gave no exposure level"
awk -v e="$exposure" 'BEGIN { exit !(e <= 2.0) }' || fail "exposure level $exposure (above 2.0)"
say "systemd-analyze verify: clean; security exposure $exposure (of 10)"

key() { sed -n "s/^$1=//p" "$UNIT"; }
[ "$(key User)" = fluo ] && [ "$(key Group)" = fluo ] || fail "the unit's User/Group"
env_file="$(key EnvironmentFile | sed 's/^-//')"
exec_start="$(key ExecStart)"
[ -n "$env_file" ] && [ -n "$exec_start" ] || fail "the unit lacks EnvironmentFile or ExecStart"
[ "$(key WorkingDirectory)" = "" ] || fail "the unit sets WorkingDirectory: the test runs in /"
grep -q '^Environment=' "$UNIT" && fail "the unit sets Environment=: the test reads only EnvironmentFile"

# --- start it ---
if [ "$systemd" -eq 1 ]; then
  # The unit itself, which the postinst started (moved by the drop-in).
  systemctl is-active --quiet fluo || fail "postinst did not start fluo.service: $(systemctl status fluo --no-pager 2>&1 | tail -n 20)"
  invocation="$(systemctl show fluo -p InvocationID --value)"
  journal() { journalctl --no-pager -o cat "_SYSTEMD_INVOCATION_ID=$invocation"; }
  port=
  for _ in $(seq 300); do
    port="$(journal | sed -n 's|.*listening on ws://127.0.0.1:\([0-9]*\)/kurento.*|\1|p' | head -n 1)"
    [ -n "$port" ] && break
    systemctl is-active --quiet fluo || fail "fluo.service stopped: $(journal | tail -n 20)"
    sleep 0.1
  done
  [ -n "$port" ] || fail "fluo.service did not listen within 30 s: $(journal | tail -n 20)"
  fluo_pid="$(systemctl show fluo -p MainPID --value)"
  grep -q '^NoNewPrivs:[[:space:]]*1$' "/proc/$fluo_pid/status" || fail "fluo.service is without no_new_privs"
  grep -q '^Seccomp:[[:space:]]*2$' "/proc/$fluo_pid/status" || fail "fluo.service has no system call filter"
  say "fluo.service started by postinst (systemd is PID 1), pid $fluo_pid, ws://127.0.0.1:$port/kurento"
else
  # As the unit would: systemd's environment for a system service with User= (PATH, HOME,
  # USER, LOGNAME, SHELL), then the environment file's variables, then the test's moves.
  mapfile -t file_env < <(grep -Ev '^[[:space:]]*(#|$)' "$env_file")
  # shellcheck disable=SC2086
  (
    cd /
    exec runuser -u fluo -g fluo -- env -i \
      PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      HOME="$home" USER=fluo LOGNAME=fluo SHELL="$shell" \
      "${file_env[@]}" \
      FLUO_BIND=127.0.0.1 FLUO_PORT=0 FLUO_HTTP_PORT=0 KMS_NETWORK_INTERFACES=lo \
      $exec_start # split into words, as systemd splits ExecStart (no quotes in it)
  ) >"$work/server.log" 2>&1 &
  server_pid=$!
  journal() { cat "$work/server.log"; }
  port=
  for _ in $(seq 300); do
    port="$(sed -n 's|.*listening on ws://127.0.0.1:\([0-9]*\)/kurento.*|\1|p' "$work/server.log" | head -n 1)"
    [ -n "$port" ] && break
    kill -0 "$server_pid" 2>/dev/null || fail "the server exited: $(journal)"
    sleep 0.1
  done
  [ -n "$port" ] || fail "the server did not listen within 30 s: $(journal)"
  fluo_pid="$(pgrep -P "$server_pid" -x fluo || echo "$server_pid")"
  say "started as the unit would, pid $fluo_pid, ws://127.0.0.1:$port/kurento"
fi
[ "$(ps -o user= -p "$fluo_pid")" = fluo ] || fail "the server does not run as fluo"
grep -q '^CapEff:[[:space:]]*0*$' "/proc/$fluo_pid/status" || fail "the server has capabilities: $(grep Cap "/proc/$fluo_pid/status")"
grep -qx 'KURENTO_CONF_FILE=/etc/fluo/kurento.conf.json' <<<"$(tr '\0' '\n' <"/proc/$fluo_pid/environ")" ||
  fail "the server did not get the environment file's KURENTO_CONF_FILE"

node "$ROOT/tests/package/drive.js" --url "ws://127.0.0.1:$port/kurento" \
  --record-dir /var/lib/fluo/recordings --host-dir /var/lib/fluo/recordings --owner "$uid" ||
  fail "kurento-client against the installed server; its log: $(journal | tail -n 40)"
workers="$(pgrep -P "$fluo_pid" | wc -l)"
users="$(pgrep -P "$fluo_pid" | xargs -r ps -o user= -p | sort -u | paste -sd,)"
[ "$workers" -gt 0 ] && [ "$users" = fluo ] || fail "media workers: $workers, running as '$users'"

if [ "$systemd" -eq 1 ]; then
  systemctl stop fluo || fail "systemctl stop fluo"
  result="$(systemctl show fluo -p Result -p ExecMainStatus | sort | paste -sd' ')"
  [ "$result" = "ExecMainStatus=0 Result=success" ] || fail "fluo.service stopped with $result"
else
  kill -TERM "$fluo_pid"
  for _ in $(seq 150); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$server_pid" 2>/dev/null && fail "the server did not stop within 15 s of SIGTERM"
  wait "$server_pid" && status=0 || status=$?
  server_pid=
  [ "$status" -eq 0 ] || fail "the server exited with status $status after SIGTERM: $(journal | tail -n 20)"
fi
log="$(journal)"
# Every media worker started at its first try, no panic, no colour codes (/etc/default/fluo
# sets NO_COLOR for the journal; off a terminal Fluo leaves them out anyway), the recorder's
# media worker's lines included.
check_server_log "deb-test: the installed server" "$log"
grep -q 'fluo_gst::recorder: recording finalised' <<<"$log" || fail "no line of the recorder's media worker in the log"
say "served kurento-client, $workers media workers as fluo, stopped cleanly"

# --- remove, then purge ---
recording="$(ls /var/lib/fluo/recordings/)"
# A file of the operator's beside it: purge gives fluo's files to root, not this one.
install -o nobody -g nogroup -m 0644 /dev/null /var/lib/fluo/recordings/operator.txt
apt_get remove -y -qq fluo >"$work/dpkg.log" 2>&1 || fail "apt-get remove: $(cat "$work/dpkg.log")"
[ ! -e /usr/bin/fluo ] && [ ! -e "$UNIT" ] && [ ! -e /usr/lib/fluo ] || fail "remove left the package's files"
[ -f /etc/fluo/kurento.conf.json ] && [ -f /etc/default/fluo ] || fail "remove took the conffiles"
getent passwd fluo >/dev/null || fail "remove deleted the fluo user (purge's job)"
apt_get purge -y -qq fluo >"$work/dpkg.log" 2>&1 || fail "apt-get purge: $(cat "$work/dpkg.log")"
installed=0
getent passwd fluo >/dev/null && fail "purge left the fluo user"
getent group fluo >/dev/null && fail "purge left the fluo group"
left=()
for p in /etc/fluo /etc/default/fluo /usr/bin/fluo /usr/lib/fluo /usr/share/doc/fluo "$UNIT" \
  /etc/systemd/system/fluo.service /etc/systemd/system/multi-user.target.wants/fluo.service \
  /var/lib/systemd/deb-systemd-helper-enabled/fluo.service.dsh-also \
  /var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants/fluo.service \
  /var/lib/systemd/deb-systemd-helper-masked/fluo.service /var/lib/fluo/.cache; do
  if [ -e "$p" ] || [ -L "$p" ]; then left+=("$p"); fi
done
[ "${#left[@]}" -eq 0 ] || fail "purge left ${left[*]}"
for f in /etc/fluo/kurento.conf.json /etc/default/fluo; do
  if dpkg-statoverride --list "$f" >/dev/null; then fail "purge left the statoverride of $f"; fi
done
# The recordings stay, fluo's given to root, the operator's file as it was; nothing else of
# the package's does.
[ "$(ls -A /var/lib/fluo)" = recordings ] &&
  [ "$(ls -A /var/lib/fluo/recordings | sort | paste -sd' ')" = "operator.txt $recording" ] ||
  fail "after purge /var/lib/fluo holds: $(find /var/lib/fluo | paste -sd' ')"
owners="$(cd /var/lib/fluo && find . -printf '%p %u:%g\n' | sort | paste -sd,)"
expected="$(printf '%s\n' ". root:root" "./recordings root:root" "./recordings/$recording root:root" \
  "./recordings/operator.txt nobody:nogroup" | sort | paste -sd,)"
[ "$owners" = "$expected" ] || fail "owners after purge: $owners"
rm -rf /var/lib/fluo
say "remove kept the conffiles and the user; purge removed them, their modes, the unit's links and the cache, and kept the recording ($recording, now root's) and the operator's file (still nobody's)"
