# shellcheck shell=bash
# Sourced by tests/package/deb-test.sh and container-test.sh (which define `fail`).

# check_server_log WHAT TEXT: fails when the server's log says a media worker did not start
# (the server goes on with fewer, and creates wait or fail), a panic, a worker without its
# sandbox, or holds a colour code (the journal and container logs get plain lines); prints
# its other WARN and ERROR lines.
check_server_log() {
  local what="$1" text="$2" bad
  bad="$(grep -iE 'did not start|failed to start|panicked|could not drop privileges|Landlock not applied|seccomp filter not installed' <<<"$text" | head -n 5 || true)"
  [ -z "$bad" ] || fail "$what's log: $bad"
  if grep -q $'\e' <<<"$text"; then fail "colour codes in $what's log: $(grep -m1 $'\e' <<<"$text" | cat -v)"; fi
  grep -E 'WARN|ERROR' <<<"$text" | sed "s/^/$what's log: /" || true
}

# state_of PATH...: one line per path: absent, a folder and its entries, or a file's type,
# size and modification time (what the package test must leave as it found).
state_of() {
  local p
  for p in "$@"; do
    if [ -d "$p" ] && [ ! -L "$p" ]; then
      echo "$p folder: $(ls -A "$p" | paste -sd' ')"
    elif [ -e "$p" ] || [ -L "$p" ]; then
      echo "$p $(stat -c '%F %s %Y' "$p")"
    else
      echo "$p absent"
    fi
  done
}
