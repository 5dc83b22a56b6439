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

test('two WebRtcEndpoints negotiate with each other across pipelines and media flows through both', T, async () => {
  const clip = await makeClip(path.join(dir, 'clip.webm'), { seconds: 10 });
  const p1 = await client.create('MediaPipeline');
  const p2 = await client.create('MediaPipeline');
  const player = await p1.create('PlayerEndpoint', { uri: fileUri(clip) });
  const a = await p1.create('WebRtcEndpoint');
  const b = await p2.create('WebRtcEndpoint');
  const file = path.join(dir, 'through-both.webm');
  const recorder = await p2.create('RecorderEndpoint', { uri: fileUri(file), mediaProfile: 'WEBM_VIDEO_ONLY' });
  await player.connect(a);
  await b.connect(recorder);
  const logA = await eventLog(a, ['IceCandidateFound', 'IceComponentStateChanged', 'NewCandidatePairSelected']);
  const logB = await eventLog(b, ['IceCandidateFound', 'IceComponentStateChanged', 'NewCandidatePairSelected', 'MediaFlowInStateChanged']);
  // Candidates are passed on as applications do.
  a.on('IceCandidateFound', (e) => b.addIceCandidate(e.candidate));
  b.on('IceCandidateFound', (e) => a.addIceCandidate(e.candidate));

  const offer = await a.generateOffer();
  assert.match(offer, /\r\na=ice-lite\r\n/, 'every endpoint starts as ICE-lite');
  const answer = await b.processOffer(offer);
  assert.doesNotMatch(answer, /a=ice-lite/, 'B answers an ICE-lite offer as a full agent');
  await a.processAnswer(answer);
  assert.equal(await a.getRemoteSessionDescriptor(), answer);
  assert.equal(await b.getRemoteSessionDescriptor(), offer);
  await a.gatherCandidates();
  await b.gatherCandidates();

  await player.play();
  await logB.wait('MediaFlowInStateChanged', 20000, (d) => d.mediaType === 'VIDEO' && d.state === 'FLOWING');
  await recorder.record();
  await h.sleep(3000);
  const stats = await b.getStats('VIDEO');
  const inbound = Object.values(stats).find((s) => s.type === 'inboundrtp');
  assert.ok(inbound && inbound.packetsReceived > 50, JSON.stringify(stats));
  await recorder.stopAndWait();
  const info = await probe(file);
  assert.deepEqual(info.streams, ['video:vp8'], JSON.stringify(info));
  assert.ok(info.duration >= 2, `duration ${info.duration} s for 3 s recorded`);

  for (const [name, log] of [['A', logA], ['B', logB]]) {
    assert.ok(log.of('IceCandidateFound').length > 0, `${name} gathered`);
    assert.ok(log.of('NewCandidatePairSelected').length > 0, `${name}: a selected pair`);
    // A full agent reports CONNECTED while pairs other than the selected one are still being
    // checked, READY once none is left.
    const states = log.of('IceComponentStateChanged').map((e) => e.data.state);
    assert.ok(states.some((s) => s === 'CONNECTED' || s === 'READY'), `${name}: ${states}`);
  }
  await p1.release();
  await p2.release();
});
