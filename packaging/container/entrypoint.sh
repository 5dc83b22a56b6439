#!/usr/bin/env bash
# The container's entry point, as the official KMS image's: the KMS_* variables configure the
# server, GST_DEBUG has a default, KMS_UID runs it as that user id (the user fluo, renumbered),
# and the arguments go to the server (`podman run IMAGE --help`).
set -euo pipefail

log() { echo "[entrypoint] $*" >&2; }

# Plain log lines where the output is not a terminal (podman logs, docker logs, a log driver):
# Fluo's (it leaves colours out there itself) and GStreamer's (which colours even a pipe).
[ -t 1 ] || export NO_COLOR=1 GST_DEBUG_NO_COLOR=1

# KMS reads /etc/kurento/kurento.conf.json: a file mounted there is used; else the package's.
if [[ -z "${KURENTO_CONF_FILE:-}" ]]; then
    if [[ -f /etc/kurento/kurento.conf.json ]]; then
        export KURENTO_CONF_FILE=/etc/kurento/kurento.conf.json
    else
        export KURENTO_CONF_FILE=/etc/fluo/kurento.conf.json
    fi
fi
# PointerDetectorFilter, shipped by the package (as /etc/default/fluo sets it for the service).
export KURENTO_MODULES_PATH="${KURENTO_MODULES_PATH:-/usr/lib/fluo/modules}"

# Fluo reads KMS_MIN_PORT, KMS_MAX_PORT, KMS_NETWORK_INTERFACES, KMS_EXTERNAL_IPV4,
# KMS_EXTERNAL_IPV6, KMS_STUN_IP, KMS_STUN_PORT, KMS_TURN_URL and KMS_ICE_TCP itself. Empty ones
# mean "not set", as in KMS's image.
for v in KMS_MIN_PORT KMS_MAX_PORT KMS_NETWORK_INTERFACES KMS_EXTERNAL_IPV4 KMS_EXTERNAL_IPV6 \
    KMS_STUN_IP KMS_STUN_PORT KMS_TURN_URL KMS_ICE_TCP; do
    if [[ -z "${!v:-}" ]]; then
        unset "$v"
    fi
done
# KMS's image asks a web service for the public address when given "auto"; Fluo's image does
# not: the STUN server (KMS_STUN_IP) gives the same candidate.
for v in KMS_EXTERNAL_IPV4 KMS_EXTERNAL_IPV6; do
    if [[ "${!v:-}" == auto ]]; then
        log "$v=auto is not supported (set the address, or KMS_STUN_IP for a STUN-learnt one): ignored"
        unset "$v"
    fi
done
# The image-wide MTU of KMS's image: Fluo has only the WebRtcEndpoint's mtu property.
if [[ -n "${KMS_MTU:-}" ]]; then
    log "KMS_MTU is not supported (endpoints send at most 1200-byte datagrams; set their mtu property): ignored"
fi
# KMS's WebRtcEndpoints take their DTLS certificate from these; Fluo's make their own (ECDSA
# P-256, one per process) and cannot be given one.
for v in KMS_PEM_CERTIFICATE_RSA KMS_PEM_CERTIFICATE_ECDSA; do
    if [[ -n "${!v:-}" ]]; then
        log "$v is not supported (Fluo makes its own DTLS certificate, ECDSA P-256): ignored"
    fi
done

# GStreamer's warnings, in the media workers, unless asked otherwise.
export GST_DEBUG="${GST_DEBUG:-2}"

if [[ -n "${KMS_UID:-}" && "$KMS_UID" != "$(id -u)" ]]; then
    if [[ "$(id -u)" -ne 0 ]]; then
        log "KMS_UID needs the container to start as root (it runs the server as that user id)"
        exit 1
    fi
    groupmod --gid "$KMS_UID" fluo
    usermod --uid "$KMS_UID" --gid "$KMS_UID" fluo
    # The package's configuration is root:fluo 0640 (it may hold secrets): its group follows
    # the renumbered one, or the server could no longer read it.
    chgrp fluo /etc/fluo/kurento.conf.json
    log "starting Fluo as user fluo, uid $KMS_UID"
    export HOME=/var/lib/fluo USER=fluo LOGNAME=fluo
    # setpriv executes the server in this process (it stays PID 1 and gets the signals itself,
    # where runuser would stay in between), without capabilities, not even in its bounding set.
    exec setpriv --reuid=fluo --regid=fluo --init-groups --inh-caps=-all --bounding-set=-all \
        --no-new-privs -- /usr/bin/fluo "$@"
fi
log "starting Fluo, uid $(id -u)"
exec /usr/bin/fluo "$@"
