'use strict';
// WebRtcEndpoint network properties through the official client: iceTcp, the endpoint's own
// STUN and TURN servers (IP addresses only, as KMS), externalIPv4, and the candidates they
// put in the answer.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const dgram = require('node:dgram');
const h = require('./helpers');

let server;
let client;
let pipeline;

before(async () => {
  server = await h.startServer();
  client = (await h.connectClient(server.url)).client;
  pipeline = await client.create('MediaPipeline');
});

after(async () => {
  if (pipeline) await pipeline.release().catch(() => {});
  await h.closeClient(client);
  if (server) await server.stop();
});

const T = { timeout: h.TEST_TIMEOUT };

// A minimal browser-like offer (no candidates of its own).
const OFFER = [
  'v=0', 'o=- 1 1 IN IP4 127.0.0.1', 's=-', 't=0 0', 'a=group:BUNDLE 0',
  'a=msid-semantic: WMS', 'm=video 9 UDP/TLS/RTP/SAVPF 96', 'c=IN IP4 0.0.0.0',
  'a=rtcp:9 IN IP4 0.0.0.0', 'a=ice-ufrag:abcd', 'a=ice-pwd:abcdefghijklmnopqrstuvwx',
  'a=fingerprint:sha-256 ' + Array(32).fill('AB').join(':'), 'a=setup:actpass', 'a=mid:0',
  'a=sendrecv', 'a=rtcp-mux', 'a=rtpmap:96 VP8/90000', '',
].join('\r\n');

const candidates = (sdp) => sdp.split(/\r?\n/).filter((l) => l.startsWith('a=candidate'));

// Errors from generated setters reach a callback (their promise only logs them).
const call = (fn) => new Promise((resolve) => fn((e) => resolve(e || undefined)));

test('iceTcp: on by default, passive TCP candidates in the answer; off leaves UDP only', T, async () => {
  const on = await pipeline.create('WebRtcEndpoint');
  assert.equal(await on.getIceTcp(), true);
  const a = candidates(await on.processOffer(OFFER));
  assert.ok(a.some((l) => / tcp .* tcptype passive/.test(l)), a.join('\n'));
  assert.ok(a.some((l) => / udp /.test(l)), a.join('\n'));
  const off = await pipeline.create('WebRtcEndpoint');
  await off.setIceTcp(false);
  assert.equal(await off.getIceTcp(), false);
  const b = candidates(await off.processOffer(OFFER));
  assert.ok(b.length > 0 && b.every((l) => / udp /.test(l)), b.join('\n'));
  await on.release();
  await off.release();
});

test('stunServerAddress/Port: an IP only (40107 otherwise); the STUN answer becomes a candidate', T, async () => {
  // A STUN server on 127.0.0.1 that maps every request to 203.0.113.77:40404.
  const stun = dgram.createSocket('udp4');
  await new Promise((r) => stun.bind(0, '127.0.0.1', r));
  stun.on('message', (m, rinfo) => {
    if (m.length < 20) return;
    const attr = Buffer.from([0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0, 0, 0, 0, 0, 0]);
    attr.writeUInt16BE(40404 ^ 0x2112, 6);
    [203, 0, 113, 77].forEach((b, i) => { attr[8 + i] = b ^ [0x21, 0x12, 0xa4, 0x42][i]; });
    const head = Buffer.from([0x01, 0x01, 0x00, attr.length]);
    stun.send(Buffer.concat([head, m.subarray(4, 20), attr]), rinfo.port, rinfo.address);
  });
  const ep = await pipeline.create('WebRtcEndpoint');
  const bad = await call((cb) => ep.setStunServerAddress('stun.example.org', cb));
  assert.equal(bad && bad.code, 40107, String(bad && bad.message));
  assert.equal(await call((cb) => ep.setStunServerAddress('127.0.0.1', cb)), undefined);
  assert.equal(await call((cb) => ep.setStunServerPort(stun.address().port, cb)), undefined);
  assert.equal(await ep.getStunServerAddress(), '127.0.0.1');
  const a = candidates(await ep.processOffer(OFFER));
  assert.ok(a.some((l) => l.includes(' 203.0.113.77 ')), a.join('\n'));
  await ep.release();
  stun.close();
});

test('turnUrl: malformed or not an IP address is refused with 40107; externalIPv4 shows in the candidates', T, async () => {
  const ep = await pipeline.create('WebRtcEndpoint');
  for (const url of ['user@127.0.0.1:3478', 'u:p@turn.example.org:3478', 'u:p@127.0.0.1', 'u:p@127.0.0.1:3478?transport=sctp']) {
    const e = await call((cb) => ep.setTurnUrl(url, cb));
    assert.equal(e && e.code, 40107, `${url}: ${e && e.message}`);
  }
  await ep.setExternalIPv4('198.51.100.23');
  assert.equal(await ep.getExternalIPv4(), '198.51.100.23');
  const a = candidates(await ep.processOffer(OFFER));
  assert.ok(a.some((l) => l.includes(' 198.51.100.23 ')), a.join('\n'));
  await ep.release();
});
