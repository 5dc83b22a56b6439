#!/usr/bin/env python3
"""Writes the seed corpora in fuzz/corpus/ (run from anywhere; the files are committed).

Regression seeds (inputs that once crashed) are kept in the same folders under names
starting with `regress-`; this script leaves them alone."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def put(target, name, data):
    path = os.path.join(HERE, "corpus", target, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(path, "wb") as f:
        f.write(data)


def req(i, method, params, sid=None):
    import json
    if sid is not None:
        params = dict(params, sessionId=sid)
    return json.dumps({"id": i, "method": method, "params": params, "jsonrpc": "2.0"},
                      separators=(",", ":"))


# ---- jsonrpc: frames separated by '\n' ----
put("jsonrpc", "ping", req(1, "ping", {"interval": 240000}))
put("jsonrpc", "pipeline-passthrough", "\n".join([
    req(1, "ping", {"interval": 240000}),
    req(2, "describe", {"object": "manager_ServerManager"}),
    req(3, "create", {"type": "MediaPipeline", "constructorParams": {}, "properties": {}}),
    req(4, "create", {"type": "PassThrough", "constructorParams": {"mediaPipeline": "newref:3"}}),
    req(5, "invoke", {"object": "manager_ServerManager", "operation": "getPipelines"}),
    req(6, "subscribe", {"object": "manager_ServerManager", "type": "ObjectCreated"}),
    req(7, "release", {"object": "nope"}),
]))
put("jsonrpc", "transaction", req(1, "transaction", {"operations": [
    {"jsonrpc": "2.0", "id": 0, "method": "create",
     "params": {"type": "MediaPipeline", "constructorParams": {}}},
    {"jsonrpc": "2.0", "id": 1, "method": "create",
     "params": {"type": "PassThrough", "constructorParams": {"mediaPipeline": "newref:0"}}},
    {"jsonrpc": "2.0", "id": 2, "method": "invoke",
     "params": {"object": "newref:1", "operation": "connect",
                "operationParams": {"sink": "newref:1", "mediaType": "VIDEO"}}},
    {"jsonrpc": "2.0", "id": 3, "method": "invoke",
     "params": {"object": "newref:1", "operation": "setName",
                "operationParams": {"name": "x"}}},
]}))
put("jsonrpc", "session-reconnect", "\n".join([
    req(1, "create", {"type": "MediaPipeline"}),
    "#close",
    "#open",
    req(2, "connect", {}),
    "#tick",
    "2>" + req(3, "ping", {}),
    req(4, "invoke", {"object": "manager_ServerManager", "operation": "getInfo"}),
    req(5, "closeSession", {}),
    "not json",
    '{"jsonrpc":"2.0","method":"onEvent","params":{}}',
]))

# ---- sdp: a Chrome-like offer (audio, video, data channel) ----
CHROME = "\r\n".join([
    "v=0",
    "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
    "s=-",
    "t=0 0",
    "a=group:BUNDLE 0 1 2",
    "a=extmap-allow-mixed",
    "a=msid-semantic: WMS stream",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 0 8 126",
    "c=IN IP4 0.0.0.0",
    "a=rtcp:9 IN IP4 0.0.0.0",
    "a=ice-ufrag:8hhY",
    "a=ice-pwd:asd88fgpdd777uzjYhagZg",
    "a=ice-options:trickle",
    "a=fingerprint:sha-256 D2:FA:0E:C3:22:59:5E:14:95:69:92:3D:13:B4:84:24:2C:C2:A2:C0:3E:FD:34:8E:5E:EA:6F:AF:52:CE:E6:0F",
    "a=setup:actpass",
    "a=mid:0",
    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
    "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
    "a=sendrecv",
    "a=msid:stream audio0",
    "a=rtcp-mux",
    "a=rtpmap:111 opus/48000/2",
    "a=rtcp-fb:111 transport-cc",
    "a=fmtp:111 minptime=10;useinbandfec=1",
    "a=rtpmap:63 red/48000/2",
    "a=fmtp:63 111/111",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:126 telephone-event/8000",
    "a=ssrc:1001 cname:fuzz",
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 45",
    "c=IN IP4 0.0.0.0",
    "a=rtcp:9 IN IP4 0.0.0.0",
    "a=ice-ufrag:8hhY",
    "a=ice-pwd:asd88fgpdd777uzjYhagZg",
    "a=ice-options:trickle",
    "a=fingerprint:sha-256 D2:FA:0E:C3:22:59:5E:14:95:69:92:3D:13:B4:84:24:2C:C2:A2:C0:3E:FD:34:8E:5E:EA:6F:AF:52:CE:E6:0F",
    "a=setup:actpass",
    "a=mid:1",
    "a=extmap:2 urn:ietf:params:rtp-hdrext:toffset",
    "a=extmap:4 urn:3gpp:video-orientation",
    "a=extmap:9 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=sendrecv",
    "a=msid:stream video0",
    "a=rtcp-mux",
    "a=rtcp-rsize",
    "a=rtpmap:96 VP8/90000",
    "a=rtcp-fb:96 goog-remb",
    "a=rtcp-fb:96 transport-cc",
    "a=rtcp-fb:96 ccm fir",
    "a=rtcp-fb:96 nack",
    "a=rtcp-fb:96 nack pli",
    "a=rtpmap:97 rtx/90000",
    "a=fmtp:97 apt=96",
    "a=rtpmap:102 H264/90000",
    "a=rtcp-fb:102 nack pli",
    "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
    "a=rtpmap:103 rtx/90000",
    "a=fmtp:103 apt=102",
    "a=rtpmap:45 AV1/90000",
    "a=ssrc-group:FID 2001 2002",
    "a=ssrc:2001 cname:fuzz",
    "a=ssrc:2002 cname:fuzz",
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
    "c=IN IP4 0.0.0.0",
    "a=ice-ufrag:8hhY",
    "a=ice-pwd:asd88fgpdd777uzjYhagZg",
    "a=fingerprint:sha-256 D2:FA:0E:C3:22:59:5E:14:95:69:92:3D:13:B4:84:24:2C:C2:A2:C0:3E:FD:34:8E:5E:EA:6F:AF:52:CE:E6:0F",
    "a=setup:actpass",
    "a=mid:2",
    "a=sctp-port:5000",
    "a=max-message-size:262144",
    "",
])
put("sdp", "chrome-offer", CHROME)
put("sdp", "answer-active", CHROME.replace("a=setup:actpass", "a=setup:active")
    .replace("a=group:BUNDLE 0 1 2", "a=group:BUNDLE 0 1").split("m=application")[0])
put("sdp", "recvonly-audio", "\r\n".join([
    "v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0",
    "m=audio 9 UDP/TLS/RTP/SAVPF 0", "c=IN IP4 0.0.0.0", "a=mid:a",
    "a=ice-ufrag:abcd", "a=ice-pwd:0123456789abcdef012345",
    "a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF",
    "a=setup:passive", "a=recvonly", "a=rtcp-mux", "a=rtpmap:0 PCMU/8000",
    "a=candidate:1 1 udp 2122260223 192.168.1.2 54321 typ host", "",
]))

# ---- rtp_rtcp: records [flags][len u16][bytes] ----


def rec(flags, data):
    return bytes([flags]) + struct.pack(">H", len(data)) + data


rtp = bytes([0x90, 0x60]) + struct.pack(">HII", 4711, 90000, 0x11223344) \
    + struct.pack(">HH", 0xBEDE, 1) + bytes([0x10, 0x01, 0, 0]) + b"\x90\x80\x00" + b"\x00" * 40
rtp_pad = bytes([0xA0 | 2, 111]) + struct.pack(">HII", 1, 960, 0x55667788) + bytes([0x42, 0x43, 0, 0, 0, 0, 4]) + b"\x00\x00\x00\x04"
sr = bytes([0x81, 200]) + struct.pack(">H", 12) + struct.pack(">IQIII", 0x11223344, 0xE0000000_00000000, 90000, 10, 1000) \
    + struct.pack(">IIIIII", 0x99, 0x01000005, 4711, 20, 0, 0)
sdes = bytes([0x81, 202]) + struct.pack(">H", 3) + struct.pack(">I", 0x11223344) + bytes([1, 4]) + b"fuzz" + b"\x00\x00"
nack = bytes([0x81, 205]) + struct.pack(">HIIHH", 3, 1, 0x11223344, 4700, 0x0005)
pli = bytes([0x81, 206]) + struct.pack(">HII", 2, 1, 0x11223344)
fir = bytes([0x84, 206]) + struct.pack(">HIIIB3x", 4, 1, 0, 0x11223344, 7)
remb = bytes([0x8F, 206]) + struct.pack(">HII", 5, 1, 0) + b"REMB" + bytes([1, 0x0A, 0x12, 0x34]) + struct.pack(">I", 0x11223344)
bye = bytes([0x81, 203]) + struct.pack(">HI", 1, 0x11223344)
stun = struct.pack(">HHI", 0x0001, 0, 0x2112A442) + b"\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c"
user = b"srvufrag:8hhY"
attr = struct.pack(">HH", 0x0006, len(user)) + user + b"\x00" * ((4 - len(user) % 4) % 4)
prio = struct.pack(">HHI", 0x0024, 4, 0x6E7F00FF)
stun = struct.pack(">HHI", 0x0001, len(attr) + len(prio), 0x2112A442) + stun[8:20] + attr + prio
dtls = bytes([22, 0xFE, 0xFD, 0, 0]) + b"\x00" * 6 + struct.pack(">H", 12) + bytes([1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
put("rtp_rtcp", "rtp-ext", rec(0, rtp) + rec(1, rtp))
put("rtp_rtcp", "rtp-padding", rec(1, rtp_pad))
put("rtp_rtcp", "rtcp-sr-sdes", rec(1, sr + sdes))
put("rtp_rtcp", "rtcp-feedback", rec(1, nack + pli) + rec(3, fir + remb + bye))
put("rtp_rtcp", "stun-binding", rec(0, stun) + rec(1, stun))
put("rtp_rtcp", "dtls-hello", rec(1, dtls) + rec(2, b""))

# ---- egress_rtcp: [flags][bytes], flags 1 viewer SRTCP, 2 str0m SRTCP, 4 SDES ----
# Plaintext the readers see once the target protects it: a viewer's RR on Fluo's streams
# (0x100 video, 0x200 audio) with a NACK of video packets and a PLI; str0m's SR + SDES.
rr2 = bytes([0x82, 201]) + struct.pack(">HI", 13, 1) + \
    struct.pack(">IIIIII", 0x100, 0, 0x1234, 0, 0, 0) + struct.pack(">IIIIII", 0x200, 0, 77, 0, 0, 0)
nack_v = bytes([0x81, 205]) + struct.pack(">HIIHH", 3, 1, 0x100, 0x0150, 0x00FF)
pli_v = bytes([0x81, 206]) + struct.pack(">HII", 2, 1, 0x100)
sr_v = bytes([0x80, 200]) + struct.pack(">HIIIIII", 6, 0x100, 0xE000_0000, 0, 0, 0, 0)
put("egress_rtcp", "viewer-rr-nack-pli", bytes([1]) + rr2 + nack_v + pli_v)
put("egress_rtcp", "str0m-sr-sdes", bytes([2]) + sr_v + sdes)
put("egress_rtcp", "sdes-rtp", bytes([4]) + rtp)
put("egress_rtcp", "all", bytes([7]) + rr2 + nack_v)

# ---- uri_sdp_plain: URIs and plain RTP SDP ----
put("uri_sdp_plain", "file", "file:///srv/media/clip%20one.webm")
put("uri_sdp_plain", "http", "https://cdn.example.com/a/b.mp4?x=1#y")
put("uri_sdp_plain", "rtsp", "rtsp://user:pw@[::1]:8554/live")
put("uri_sdp_plain", "bad-file", "file://host/../etc/passwd")
put("uri_sdp_plain", "plain-sdp", "\r\n".join([
    "v=0", "o=- 0 0 IN IP4 10.0.0.1", "s=-", "c=IN IP4 10.0.0.1", "t=0 0",
    "m=audio 5004 RTP/AVP 0 96", "a=rtpmap:96 opus/48000/2", "a=sendrecv", "a=rtcp:5005",
    "m=video 5006 RTP/SAVP 97", "c=IN IP6 ::1", "a=rtpmap:97 H264/90000",
    "a=fmtp:97 packetization-mode=1;profile-level-id=42e01f",
    "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz",
    "a=recvonly", "",
]))

# ---- http_request: byte 0 the body's piece size, then one connection's bytes ----
put("http_request", "chunked", bytes([7]) + b"POST /post/0b0e6f1a-54a3-4d2b-9b33-2c1e0f6f8a11?access_token=token HTTP/1.1\r\n"
    b"Host: 127.0.0.1:9091\r\nTransfer-Encoding: chunked\r\nContent-Type: video/webm\r\n\r\n"
    b"5;ext=1\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nTrailer: x\r\n\r\n")
put("http_request", "length", bytes([64]) + b"POST /post/x HTTP/1.1\r\nAuthorization: Bearer token\r\n"
    b"Content-Length: 11\r\n\r\nhello world")
put("http_request", "options", bytes([1]) + b"OPTIONS /post/x HTTP/1.1\r\nOrigin: https://a.example\r\n\r\n")

# ---- dependency_descriptor: records [len u8][descriptor] of one stream ----
class Bits:
    def __init__(self):
        self.bits = []

    def put(self, v, n):
        self.bits += [(v >> i) & 1 for i in reversed(range(n))]
        return self

    def ns(self, n, v):
        w = n.bit_length()
        m = (1 << w) - n
        if v < m:
            return self.put(v, w - 1)
        t = v + m
        return self.put(t >> 1, w - 1).put(t & 1, 1)

    def bytes(self):
        b = self.bits + [0] * (-len(self.bits) % 8)
        return bytes(int("".join(map(str, b[i:i + 8])), 2) for i in range(0, len(b), 8))


# L3T3_KEY as in fluo-sfu's dependency_descriptor tests: (spatial, temporal, DTIs, fdiffs,
# chain diffs, next_layer_idc).
L3T3_KEY = [
    ("SSSSSSSSS", [], [0, 0, 0], 0), ("SSS------", [12], [12, 11, 10], 1),
    ("-DS------", [6], [6, 5, 4], 1), ("--D------", [3], [3, 2, 1], 2),
    ("---SSSSSS", [1], [1, 1, 1], 0), ("---SSS---", [12], [1, 12, 11], 1),
    ("----DS---", [6], [7, 6, 5], 1), ("-----D---", [3], [4, 3, 2], 2),
    ("------SSS", [1], [2, 1, 1], 0), ("------SSS", [12], [2, 1, 12], 1),
    ("-------DS", [6], [8, 7, 6], 1), ("--------D", [3], [5, 4, 3], 3),
]


def dd_key(offset, frame):
    b = Bits().put(1, 1).put(0, 1).put(offset, 6).put(frame, 16).put(1, 1).put(0, 4)
    b.put(offset, 6).put(8, 5)
    for t in L3T3_KEY:
        b.put(t[3], 2)
    for t in L3T3_KEY:
        for c in t[0]:
            b.put("-DSR".index(c), 2)
    for t in L3T3_KEY:
        for d in t[1]:
            b.put(1, 1).put(d - 1, 4)
        b.put(0, 1)
    b.ns(10, 3)
    for p in [0, 0, 0, 1, 1, 1, 2, 2, 2]:
        b.ns(3, p)
    for t in L3T3_KEY:
        for c in t[2]:
            b.put(c, 4)
    b.put(1, 1)
    for w, h in [(320, 180), (640, 360), (1280, 720)]:
        b.put(w - 1, 16).put(h - 1, 16)
    return b.bytes()


def dd_frame(template, frame):
    return Bits().put(1, 1).put(1, 1).put(template, 6).put(frame, 16).bytes()


def records(ds):
    return b"".join(bytes([len(d)]) + d for d in ds)


stream = [dd_key(0, 1000), dd_frame(4, 1001), dd_frame(8, 1002)]
frame = 1003
for t in [3, 2, 3, 1]:
    for s in range(3):
        stream.append(dd_frame(t + 4 * s, frame))
        frame += 1
put("dependency_descriptor", "l3t3-key", records(stream))
put("dependency_descriptor", "new-structure", records([dd_key(0, 1), dd_frame(5, 2), dd_key(40, 3), dd_frame(5, 4)]))
