#!/usr/bin/env bash
# The image's health check: a WebSocket handshake on the Kurento path is answered with 101.
# FLUO_PORT / FLUO_PATH when the server was moved (8888 and kurento by default).
set -u
port="${FLUO_PORT:-8888}"
path="${FLUO_PATH:-kurento}"
code="$(curl --silent --output /dev/null --max-time 2 --write-out '%{http_code}' \
    --header 'Connection: Upgrade' --header 'Upgrade: websocket' \
    --header 'Sec-WebSocket-Version: 13' --header 'Sec-WebSocket-Key: Zmx1by1oZWFsdGgtY2hlY2s=' \
    "http://127.0.0.1:${port}/${path#/}")"
[[ "$code" == 101 ]]
