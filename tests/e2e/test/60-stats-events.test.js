'use strict';
// e2e: alone (its assertions compare timings: run with no other file at once)
// getStats and MediaStateChanged against Chromium, with the official kurento-client: a page
// sends its fake camera and microphone to a WebRtcEndpoint connected to itself, across a UDP
// relay that delays every datagram by 50 ms each way (a 100 ms round trip). Fluo's figures
// are compared with the browser's own getStats over the same seconds: what Fluo received
// with what the browser sent, the round trip Fluo measures with the browser's, the SSRC Fluo
// reports sending with the one the browser receives.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { setup, withDiagnostics, waitFor, log, sleep } = require('../lib/env');
const { startDelayProxy, freeUdpPort } = require('../lib/delay-proxy');

const kurento = require(path.resolve(__dirname, '../../../web/node_modules/kurento-client'));

const DELAY_MS = 50;
const RELAY = '127.0.0.2';

let env;
let proxy;
let client;

before(async () => {
  const port = await freeUdpPort('127.0.0.1');
  env = await setup('stats-events', {
    // One media port, announced at the relay's address; no ICE-TCP (it would bypass the relay).
    fluoArgs: () => ['--min-port', `${port}`, '--max-port', `${port}`, '--external-ipv4', RELAY, '--ice-tcp', '0'],
  });
  proxy = await startDelayProxy({
    listen: { address: RELAY, port },
    target: { address: '127.0.0.1', port },
    delayMs: DELAY_MS,
  });
  client = await kurento(env.fluo.url, { failAfter: 3 });
});
after(async () => {
  if (client) client.close();
  if (proxy) await proxy.close();
  if (env) await env.teardown();
});

// A remote call that rejects on a server error (kurento-client 7.3.0 only logs an error when
// given no callback).
function call(object, method, ...args) {
  return new Promise((resolve, reject) => {
    object[method](...args, (error, result) => (error ? reject(error) : resolve(result)));
  });
}

// In the page: the browser's own figures.
async function browserStats(page) {
  return page.evaluate(async () => {
    // Round trips as sums and counts, for averages over an interval.
    const out = { sent: {}, received: {}, remoteRtt: {}, pairRtt: null };
    const report = await window.pc.getStats();
    let pairId = null;
    report.forEach((s) => {
      if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
    });
    report.forEach((s) => {
      if (s.type === 'outbound-rtp') out.sent[s.kind] = s.packetsSent;
      if (s.type === 'inbound-rtp') out.received[s.kind] = { packets: s.packetsReceived, ssrc: s.ssrc };
      if (s.type === 'remote-inbound-rtp') {
        out.remoteRtt[s.kind] = { total: s.totalRoundTripTime, count: s.roundTripTimeMeasurements };
      }
      if (s.type === 'candidate-pair' && s.id === pairId) {
        out.pairRtt = { total: s.totalRoundTripTime, count: s.responsesReceived };
      }
    });
    return out;
  });
}

// Fluo's figures, per kind: {inbound, outbound}.
async function fluoStats(endpoint) {
  const all = await call(endpoint, 'getStats');
  const out = { AUDIO: {}, VIDEO: {} };
  for (const s of Object.values(all)) {
    const kind = (s.mediaTrackId || '').toUpperCase();
    if (s.type === 'inboundrtp') out[kind].inbound = s;
    if (s.type === 'outboundrtp') out[kind].outbound = s;
  }
  return out;
}

function within(a, b, fraction, what) {
  const diff = Math.abs(a - b);
  const bound = fraction * Math.max(Math.abs(a), Math.abs(b));
  log(`${what}: Fluo ${a}, browser ${b} (differ by ${(100 * diff / Math.max(a, b)).toFixed(1)} %)`);
  assert.ok(diff <= bound, `${what}: Fluo ${a} and the browser ${b} differ by more than ${fraction * 100} %`);
}

test('getStats matches the browser and MediaStateChanged comes with its RTCP', { timeout: 90000 }, () =>
  withDiagnostics(env, async () => {
    const page = await env.browser.newPage('stats');
    await page.goto(`${env.web.base}/hello-world.html`);
    const offer = await page.evaluate(async () => {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 480 } });
      const pc = new RTCPeerConnection();
      window.pc = pc;
      window.candidates = [];
      pc.onicecandidate = (e) => e.candidate && window.candidates.push(e.candidate.toJSON());
      for (const t of stream.getTracks()) pc.addTrack(t, stream);
      const o = await pc.createOffer();
      await pc.setLocalDescription(o);
      return o.sdp;
    });

    const pipeline = await call(client, 'create', 'MediaPipeline');
    const endpoint = await call(pipeline, 'create', 'WebRtcEndpoint');
    const seen = [];
    const stamp = (name, data) => seen.push({ name, state: data.newState || data.state, at: Date.now() });
    let connectedAt = null;
    endpoint.on('ConnectionStateChanged', (e) => {
      stamp('ConnectionStateChanged', e);
      if (e.newState === 'CONNECTED') connectedAt = Date.now();
    });
    endpoint.on('MediaFlowInStateChanged', (e) => stamp('MediaFlowInStateChanged', e));
    endpoint.on('IceCandidateFound', (e) => {
      // Only the relayed address: an IPv6 or other host candidate would bypass the relay.
      if (e.candidate.candidate.includes(` ${RELAY} `)) {
        page.evaluate((c) => window.pc.addIceCandidate(c), e.candidate).catch(() => {});
      }
    });
    await call(endpoint, 'connect', endpoint);
    let answer = await call(endpoint, 'processOffer', offer);
    answer = answer
      .split('\r\n')
      .filter((l) => !l.startsWith('a=candidate:') || l.includes(` ${RELAY} `))
      .join('\r\n');
    await page.evaluate((sdp) => window.pc.setRemoteDescription({ type: 'answer', sdp }), answer);
    await call(endpoint, 'gatherCandidates');
    for (const c of await page.evaluate(() => window.candidates)) {
      await call(endpoint, 'addIceCandidate', kurento.getComplexType('IceCandidate')(c));
    }

    // An application that subscribes once the connection is up, as Kurento's samples do
    // after connect(), still hears the media come up: KMS raises it with the peer's RTCP.
    await waitFor(() => connectedAt, 15000, 'ConnectionStateChanged CONNECTED');
    const mediaUp = new Promise((resolve) => {
      endpoint.on('MediaStateChanged', (e) => {
        stamp('MediaStateChanged', e);
        if (e.newState === 'CONNECTED') resolve(Date.now());
      });
    });
    const subscribedAt = Date.now();
    const mediaAt = await Promise.race([mediaUp, sleep(10000).then(() => null)]);
    log(`events: ${JSON.stringify(seen.map((s) => `${s.name}:${s.state}+${s.at - connectedAt}ms`))}`);
    assert.ok(mediaAt, `no MediaStateChanged CONNECTED within 10 s of subscribing (${subscribedAt - connectedAt} ms after the connection)`);
    const flowAt = seen.find((s) => s.name === 'MediaFlowInStateChanged' && s.state === 'FLOWING');
    assert.ok(flowAt && flowAt.at <= mediaAt, `media flowed in before the media state: ${JSON.stringify(seen)}`);
    assert.equal(await call(endpoint, 'getMediaState'), 'CONNECTED');

    // The same seconds seen from both sides, after the first receiver reports. Round trips
    // are averaged over them (the machine running both ends is busy: single reports vary).
    await sleep(3000);
    const [f0, b0] = await Promise.all([fluoStats(endpoint), browserStats(page)]);
    const fluoRtts = [];
    for (let i = 0; i < 8; i++) {
      await sleep(1000);
      fluoRtts.push((await fluoStats(endpoint)).VIDEO.outbound.roundTripTime);
    }
    const [f1, b1] = await Promise.all([fluoStats(endpoint), browserStats(page)]);
    log(`Fluo video: ${JSON.stringify(f1.VIDEO)}`);
    log(`browser: ${JSON.stringify(b1)}`);
    for (const kind of ['AUDIO', 'VIDEO']) {
      const k = kind.toLowerCase();
      within(
        f1[kind].inbound.packetsReceived - f0[kind].inbound.packetsReceived,
        b1.sent[k] - b0.sent[k],
        0.1,
        `${k} packets received by Fluo / sent by the browser in 8 s`,
      );
      // The SSRC Fluo says it sends is the one the browser receives.
      assert.equal(Number(f1[kind].outbound.ssrc), b1.received[k].ssrc, `${k} outbound SSRC`);
    }
    const avg = (a, b) => (b.total - a.total) / (b.count - a.count);
    const rtt = fluoRtts.reduce((a, b) => a + b, 0) / fluoRtts.length;
    log(`Fluo's round trips (s): ${JSON.stringify(fluoRtts)}`);
    assert.ok(rtt > (2 * DELAY_MS) / 1000, `Fluo's round trip ${rtt} s over a ${2 * DELAY_MS} ms relay`);
    within(rtt, avg(b0.remoteRtt.video, b1.remoteRtt.video), 0.1, 'round trip (s), from receiver reports both ways');
    // The browser checks its pair every few seconds: 2-5 samples in these 11 s, each one
    // through the busy relay, so one late answer moves their mean by tens of ms (CI saw 0.129
    // against 0.107 while the receiver reports agreed). Within 10 % or 25 ms of Fluo's.
    const checks = b1.pairRtt.count - b0.pairRtt.count;
    const iceRtt = avg(b0.pairRtt, b1.pairRtt);
    log(`browser's ICE checks: ${checks} in the window, mean ${iceRtt} s`);
    assert.ok(checks >= 1, `no ICE check answered in the window: ${JSON.stringify([b0.pairRtt, b1.pairRtt])}`);
    assert.ok(
      Math.abs(rtt - iceRtt) <= Math.max(0.1 * Math.max(rtt, iceRtt), 0.025),
      `round trip (s), Fluo's reports ${rtt} / the browser's ${checks} ICE checks ${iceRtt}: more than 10 % and 25 ms apart`,
    );
    assert.ok(proxy.forwarded.toTarget > 1000 && proxy.forwarded.toPeer > 1000, JSON.stringify(proxy.forwarded));
    await call(pipeline, 'release');
  }));
