'use strict';
// WHIP and WHEP from Chromium. The Kurento side is the official kurento-client (the web
// app's), unchanged: it creates WebRtcEndpoints with `fluoWhip: true` / `fluoWhep: true`
// among create's properties and reads their URLs as tags.
//   whip: a page publishes Chromium's fake camera by WHIP (POST of its offer, its ICE
//         candidates by PATCH to the Location, DELETE at the end: fetch from another origin,
//         CORS); a kurento-client viewer (a WebRtcEndpoint connected from the WHIP one, a
//         second page negotiating through processOffer) decodes its frames.
//   whep: a page plays a PlayerEndpoint through WHEP (a recvonly offer POSTed; frames decoded),
//         then restarts ICE by PATCH (RFC 9725 4.3.2) and plays on.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { setup, tmpDir, removeTmpDir, withDiagnostics, waitFor, log, fluoRpc, ROOT } = require('../lib/env');
const { makeClip, fileUri } = require('../lib/media');

const kurentoClient = require(path.join(ROOT, 'web/node_modules/kurento-client'));

const FRAMES = 60;

let env;
let client;
let media;
let clip;
before(async () => {
  media = tmpDir('fluo-e2e-whep-media-');
  clip = await makeClip(path.join(media, 'whep.webm'), { seconds: 20 });
  env = await setup('whip', { fluoArgs: () => ['--http-port', '0'] });
  client = await new Promise((resolve, reject) => {
    const c = kurentoClient(env.fluo.url, { failAfter: 5, duplicates_timeout: 1000 }, (err) => (err ? reject(err) : resolve({ c })));
  }).then((x) => x.c);
});
after(async () => {
  if (client) client.close();
  if (env) await env.teardown();
  if (media) removeTmpDir(media);
});

// In a page: a peer connection, `send` (the fake camera) or receive-only video; the video
// frames it decoded are window.framesDecoded().
const PEER = `
window.makePeer = async (send) => {
  const pc = new RTCPeerConnection();
  if (send) {
    const stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
    for (const t of stream.getTracks()) pc.addTransceiver(t, { direction: 'sendonly', streams: [stream] });
  } else {
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addTransceiver('audio', { direction: 'recvonly' });
  }
  window.pc = pc;
  return pc;
};
window.framesDecoded = async () => {
  let n = 0;
  (await window.pc.getStats()).forEach((r) => {
    if (r.type === 'inbound-rtp' && r.kind === 'video') n += r.framesDecoded || 0;
  });
  return n;
};
window.framesSent = async () => {
  let n = 0;
  (await window.pc.getStats()).forEach((r) => {
    if (r.type === 'outbound-rtp' && r.kind === 'video') n += r.framesEncoded || 0;
  });
  return n;
};
// WHIP/WHEP: POST the offer (its candidates as gathered so far), PATCH the later ones to the
// session's Location, as a trickling client does.
window.httpSignal = async (url, pc) => {
  const later = [];
  let session = null;
  const patches = [];
  pc.onicecandidate = (e) => {
    if (!e.candidate || !e.candidate.candidate) return;
    // The session's ufrag repeated, as RFC 9725's trickle example does: still a trickle.
    const frag = 'a=ice-ufrag:' + e.candidate.usernameFragment + '\\r\\na=mid:' + e.candidate.sdpMid + '\\r\\na=' + e.candidate.candidate + '\\r\\n';
    if (session) patches.push(window.patch(session, frag));
    else later.push(frag);
  };
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  const res = await fetch(url, { method: 'POST', body: pc.localDescription.sdp, headers: { 'Content-Type': 'application/sdp' } });
  const answer = await res.text();
  if (res.status !== 201) return { status: res.status, answer };
  const location = res.headers.get('Location');
  if (!location) return { status: res.status, error: 'no Location readable (CORS: Access-Control-Expose-Headers)' };
  session = new URL(location, url).href;
  window.session = session;
  window.etag = res.headers.get('ETag');
  await pc.setRemoteDescription({ type: 'answer', sdp: answer });
  for (const f of later) patches.push(window.patch(session, f));
  const statuses = await Promise.all(patches);
  return { status: res.status, type: res.headers.get('Content-Type'), session, etag: window.etag, patches: statuses };
};
// An ICE restart by PATCH (RFC 9725 4.3.2): the page's new credentials and candidates, with
// If-Match: *; the server's answer fragment applied to the answer it had.
window.restartIce = async () => {
  const pc = window.pc;
  pc.onicecandidate = null;
  pc.restartIce();
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') return resolve();
    pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && resolve());
  });
  const attr = (sdp, name) => sdp.match(new RegExp('a=' + name + ':(.*)'))[1].trim();
  const ours = pc.localDescription.sdp;
  const cands = [...new Set(ours.split('\\r\\n').filter((l) => l.startsWith('a=candidate:')))];
  const frag = 'a=ice-ufrag:' + attr(ours, 'ice-ufrag') + '\\r\\na=ice-pwd:' + attr(ours, 'ice-pwd') +
    '\\r\\n' + ours.match(/m=.*/)[0] + '\\r\\na=mid:' + attr(ours, 'mid') + '\\r\\n' + cands.join('\\r\\n') + '\\r\\n';
  const r = await fetch(window.session, { method: 'PATCH', body: frag,
    headers: { 'Content-Type': 'application/trickle-ice-sdpfrag', 'If-Match': '*' } });
  const body = await r.text();
  if (r.status !== 200) return { status: r.status, body };
  const old = window.etag;
  window.etag = r.headers.get('ETag');
  const theirs = body.split('\\r\\n').filter((l) => l.startsWith('a=candidate:'));
  const answer = pc.remoteDescription.sdp.split('\\r\\n')
    .filter((l) => !l.startsWith('a=candidate:') && l !== 'a=end-of-candidates')
    .flatMap((l) => {
      if (l.startsWith('a=ice-ufrag:')) return ['a=ice-ufrag:' + attr(body, 'ice-ufrag')];
      if (l.startsWith('a=ice-pwd:')) return ['a=ice-pwd:' + attr(body, 'ice-pwd'), ...theirs];
      return [l];
    });
  await pc.setRemoteDescription({ type: 'answer', sdp: answer.join('\\r\\n') });
  return { status: r.status, type: r.headers.get('Content-Type'), etag: window.etag, old, ufrag: attr(body, 'ice-ufrag') };
};
window.patch = async (session, frag) => {
  const r = await fetch(session, { method: 'PATCH', body: frag, headers: { 'Content-Type': 'application/trickle-ice-sdpfrag', 'If-Match': window.etag } });
  return r.status;
};
`;

async function peerPage(name) {
  const page = await env.browser.newPage(name);
  await page.goto(`${env.web.base}/`);
  await page.evaluate(PEER);
  return page;
}

async function framesAtLeast(page, n, what) {
  await waitFor(async () => (await page.evaluate(() => window.framesDecoded())) >= n, 20000, what);
  return page.evaluate(() => window.framesDecoded());
}

test('whip: a page publishes its camera by WHIP; a kurento-client viewer decodes it; DELETE releases the endpoint', { timeout: 90000 }, () =>
  withDiagnostics(env, async () => {
    const pipeline = await client.create('MediaPipeline');
    const whip = await pipeline.create('WebRtcEndpoint', { fluoWhip: true });
    const viewer = await pipeline.create('WebRtcEndpoint');
    const events = [];
    for (const type of ['MediaFlowInStateChanged', 'MediaSessionStarted']) whip.on(type, (e) => events.push({ type, state: e.state }));
    await whip.connect(viewer);
    const url = await whip.getTag('fluoWhipUrl');
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/whip\/[0-9a-f-]{36}$/);

    const pub = await peerPage('whip-publisher');
    const r = await pub.evaluate(async (u) => window.httpSignal(u, await window.makePeer(true)), url);
    log(`whip: ${JSON.stringify(r)}`);
    assert.equal(r.status, 201, JSON.stringify(r));
    assert.equal(r.type, 'application/sdp');
    assert.ok(r.session.startsWith(`${url}/`), r.session);
    assert.ok(r.patches.length > 0, 'the candidates went by PATCH');
    assert.ok(r.patches.every((s) => s === 204), `PATCH statuses ${r.patches}`);
    await waitFor(async () => (await pub.evaluate(() => window.framesSent())) > 10, 20000, 'the publisher sending');

    // The viewer: an ordinary Kurento negotiation (processOffer) in a second page.
    const view = await peerPage('whip-viewer');
    const offer = await view.evaluate(async () => {
      const pc = await window.makePeer(false);
      const o = await pc.createOffer();
      await pc.setLocalDescription(o);
      return o.sdp;
    });
    const answer = await viewer.processOffer(offer);
    await view.evaluate((sdp) => window.pc.setRemoteDescription({ type: 'answer', sdp }), answer);
    const n = await framesAtLeast(view, FRAMES, `${FRAMES} frames decoded by the viewer`);
    log(`whip: the kurento-client viewer decoded ${n} frames`);
    // The Kurento Protocol sees an ordinary WebRtcEndpoint: events, stats.
    await waitFor(async () => events.some((e) => e.type === 'MediaFlowInStateChanged' && e.state === 'FLOWING'), 10000, 'MediaFlowInStateChanged FLOWING on the WHIP endpoint');
    assert.ok(events.some((e) => e.type === 'MediaSessionStarted'), JSON.stringify(events));
    const stats = await whip.getStats('VIDEO');
    assert.ok(Object.values(stats).some((s) => s.type === 'inboundrtp' && s.packetsReceived > 0), JSON.stringify(stats));

    const del = await pub.evaluate(async () => (await fetch(window.session, { method: 'DELETE' })).status);
    assert.equal(del, 200);
    // Asked on a socket of its own (the application's client may answer from what it knows).
    const gone = await fluoRpc(env.fluo.url, 'invoke', { object: whip.id, operation: 'getName' }).then(() => 'still there', (e) => e.message);
    assert.match(gone, /40101/, 'the WHIP endpoint released by the DELETE');
    await pub.close();
    await view.close();
    await pipeline.release();
  }));

test('whep: a page plays a PlayerEndpoint through WHEP, restarts ICE by PATCH and plays on', { timeout: 90000 }, () =>
  withDiagnostics(env, async () => {
    const pipeline = await client.create('MediaPipeline');
    const player = await pipeline.create('PlayerEndpoint', { uri: fileUri(clip) });
    const whep = await pipeline.create('WebRtcEndpoint', { fluoWhep: true });
    const [states, pairs] = [[], []];
    whep.on('IceComponentStateChanged', (e) => states.push(e.state));
    whep.on('NewCandidatePairSelected', (e) => pairs.push(e.candidatePair));
    await player.connect(whep);
    await player.play();
    const url = await whep.getTag('fluoWhepUrl');
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/whep\/[0-9a-f-]{36}$/);
    const page = await peerPage('whep-player');
    const r = await page.evaluate(async (u) => window.httpSignal(u, await window.makePeer(false)), url);
    log(`whep: ${JSON.stringify(r)}`);
    assert.equal(r.status, 201, JSON.stringify(r));
    const n = await framesAtLeast(page, FRAMES, `${FRAMES} frames decoded through WHEP`);
    log(`whep: the page decoded ${n} frames of the PlayerEndpoint`);

    // Chromium restarts ICE (pc.restartIce) over a PATCH: the endpoint's new credentials
    // applied, the endpoint selects a new pair, the page plays on; the old ETag is stale.
    await waitFor(() => pairs.length >= 1, 10000, 'the first NewCandidatePairSelected');
    states.length = 0;
    const re = await page.evaluate(() => window.restartIce());
    log(`whep restart: ${JSON.stringify(re)}`);
    assert.equal(re.status, 200, JSON.stringify(re));
    assert.equal(re.type, 'application/trickle-ice-sdpfrag');
    assert.equal(re.etag, `"${re.ufrag}"`);
    assert.notEqual(re.etag, re.old);
    await waitFor(() => pairs.length >= 2, 15000, 'NewCandidatePairSelected after the restart');
    assert.ok(states.includes('CONNECTING') && states.some((s) => s === 'CONNECTED' || s === 'READY'), `ICE states ${states}`);
    await framesAtLeast(page, n + FRAMES, 'frames decoded after the restart');
    const stale = await page.evaluate(async (etag) => (await fetch(window.session, { method: 'PATCH',
      body: 'a=mid:0\r\n', headers: { 'Content-Type': 'application/trickle-ice-sdpfrag', 'If-Match': etag } })).status, re.old);
    assert.equal(stale, 412, 'a trickle naming the old ICE session');
    const del = await page.evaluate(async () => (await fetch(window.session, { method: 'DELETE' })).status);
    assert.equal(del, 200);
    await page.close();
    await pipeline.release();
  }));

test('whep: one fluoWhepSource URL on a PlayerEndpoint serves two pages, each its own endpoint', { timeout: 90000 }, () =>
  withDiagnostics(env, async () => {
    const pipeline = await client.create('MediaPipeline');
    const player = await pipeline.create('PlayerEndpoint', { uri: fileUri(clip), fluoWhepSource: true });
    await player.play();
    const url = await player.getTag('fluoWhepSourceUrl');
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/whep\/[0-9a-f-]{36}$/);
    const sm = await client.getServerManager();
    const created = [];
    sm.on('ObjectCreated', (e) => created.push(e.object));
    const pages = [];
    for (const name of ['whep-viewer-1', 'whep-viewer-2']) {
      const page = await peerPage(name);
      const r = await page.evaluate(async (u) => window.httpSignal(u, await window.makePeer(false)), url);
      assert.equal(r.status, 201, JSON.stringify(r));
      assert.ok(!r.session.startsWith(url), `the session is the viewer endpoint's own: ${r.session}`);
      pages.push(page);
    }
    for (const [i, page] of pages.entries()) {
      const n = await framesAtLeast(page, FRAMES, `${FRAMES} frames decoded by viewer ${i + 1}`);
      log(`whep source: viewer ${i + 1} decoded ${n} frames`);
    }
    await waitFor(async () => created.length >= 2, 5000, 'ObjectCreated for both viewers');
    const sinks = await player.getSinkConnections('VIDEO');
    assert.equal(sinks.length, 2, 'the player feeds two endpoints');
    // One viewer leaves: the other keeps playing.
    const del = await pages[0].evaluate(async () => (await fetch(window.session, { method: 'DELETE' })).status);
    assert.equal(del, 200);
    await waitFor(async () => (await player.getSinkConnections('VIDEO')).length === 1, 5000, 'one endpoint left');
    const before = await pages[1].evaluate(() => window.framesDecoded());
    await framesAtLeast(pages[1], before + 30, 'the second viewer still playing');
    for (const page of pages) await page.close();
    await pipeline.release();
  }));
