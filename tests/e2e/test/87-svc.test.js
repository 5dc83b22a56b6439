'use strict';
// SVC with Chromium and the official kurento-client: a page publishes its fake camera
// (960x540) in one VP9 encoding with `scalabilityMode: 'L3T3_KEY'` (three spatial layers,
// 240x135, 480x270 and 960x540, and three temporal layers in one stream, told apart by the
// VP9 payload descriptor), and again in AV1 (the layers told apart by the dependency
// descriptor header extension, which Fluo's answer takes and forwards to viewers that
// negotiate it); two viewer pages watch it through Fluo, one limited to the lowest
// spatial layer (create property fluoMaxVideoLayer 0), the other not. Each viewer decodes its
// layer's width (its own getStats), both keep decoding (framesDecoded rising, freezes
// bounded); lifting the limit with a tag takes the first viewer to the top width at the key
// picture Fluo asks for. FluoLayerChanged and getStats' fluoLayer say the spatial layer, with
// an empty rid. A third viewer, created with fluoMaxTemporalLayer 0, decodes the top width at
// a quarter of the frame rate (T0's pictures only) and keeps decoding; its fluoLayer says
// temporalLayer 0. In AV1 a fourth viewer page does not negotiate the descriptor (a plain
// Kurento application's viewer: Chromium's receive-only offer lacks it), and Fluo sends it the
// lowest spatial layer, which it decodes as a single-layer stream (every layer, or any two,
// decoded nothing in 12 s with Chromium 156): it decodes 240 wide, told
// NO_DEPENDENCY_DESCRIPTOR, a higher fluoMaxVideoLayer leaving it there.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { setup, withDiagnostics, waitFor, log } = require('../lib/env');
const { kurento, call, offer: pageOffer, negotiate, pageStats, waitExplained, outboundLayer } = require('../lib/peer');

const CAMERA = { width: 960, height: 540 };

let env;
let client;

before(async () => {
  env = await setup('svc', { fluoArgs: () => ['--ice-tcp', '0'] });
  client = await kurento(env.fluo.url, { failAfter: 3 });
});
after(async () => {
  if (client) client.close();
  if (env) await env.teardown();
});

// The publisher's offer: its camera in one `mime` encoding (video/VP9, video/AV1) with three
// spatial and three temporal layers, that codec its only one, its resolution kept under load.
async function publishSvc(page, mime) {
  await page.goto(`${env.web.base}/hello-world.html`);
  return page.evaluate(async ([camera, mime]) => {
    const pc = new RTCPeerConnection();
    window.pc = pc;
    window.candidates = [];
    pc.onicecandidate = (e) => e.candidate && window.candidates.push(e.candidate.toJSON());
    const stream = await navigator.mediaDevices.getUserMedia({
      video: { width: { exact: camera.width }, height: { exact: camera.height }, frameRate: 15 },
    });
    const t = pc.addTransceiver(stream.getVideoTracks()[0], {
      direction: 'sendonly',
      sendEncodings: [{ scalabilityMode: 'L3T3_KEY' }],
    });
    // The codec alone (with its retransmissions): Fluo's answer lists the codecs in its own
    // order (str0m's, VP8 first), and Chromium sends the answer's first.
    const codecs = RTCRtpSender.getCapabilities('video').codecs;
    t.setCodecPreferences(codecs.filter((c) => [mime, 'video/rtx'].includes(c.mimeType)));
    const p = t.sender.getParameters();
    p.degradationPreference = 'maintain-resolution';
    await t.sender.setParameters(p);
    const o = await pc.createOffer();
    await pc.setLocalDescription(o);
    return o.sdp;
  }, [CAMERA, mime]);
}

// What the publisher's sender encodes: its codec, scalability mode and width.
async function sending(page) {
  return page.evaluate(async () => {
    const out = {};
    const stats = await window.pc.getStats();
    stats.forEach((s) => {
      if (s.type === 'outbound-rtp' && s.kind === 'video') {
        out.width = s.frameWidth || 0;
        out.mode = s.scalabilityMode;
        out.fps = s.framesPerSecond;
        out.limit = s.qualityLimitationReason;
        const c = stats.get(s.codecId);
        out.codec = c && c.mimeType;
      }
    });
    return out;
  });
}

const DD = 'https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension';

for (const [codec, mime] of [['VP9', 'video/VP9'], ['AV1', 'video/AV1']]) {
test(`svc ${codec}: each viewer decodes the spatial layer its limit allows, a tag moves it`, { timeout: 150000 }, () =>
  withDiagnostics(env, async () => {
    const pipeline = await call(client, 'create', 'MediaPipeline');
    const publisher = await call(pipeline, 'create', 'WebRtcEndpoint');
    const low = await call(pipeline, 'create', 'WebRtcEndpoint', { fluoMaxVideoLayer: 0 });
    const top = await call(pipeline, 'create', 'WebRtcEndpoint');
    const slow = await call(pipeline, 'create', 'WebRtcEndpoint', { fluoMaxTemporalLayer: 0 });
    // AV1 only: a viewer whose page does not negotiate the descriptor.
    const plain = codec === 'AV1' ? await call(pipeline, 'create', 'WebRtcEndpoint') : null;
    low.constructor.events.push('FluoLayerChanged');
    const changes = [];
    low.on('FluoLayerChanged', (e) => changes.push(e));

    const pubPage = await env.browser.newPage(`svc-${codec}-publisher`);
    const pubOffer = await publishSvc(pubPage, mime);
    const pubAnswer = await negotiate(pubPage, publisher, pubOffer);
    assert.match(pubAnswer, new RegExp(`${codec}/90000`));
    if (codec === 'AV1') {
      assert.ok(pubOffer.includes(DD), 'Chromium offers the dependency descriptor');
      assert.ok(pubAnswer.includes(DD), "Fluo's answer takes it");
    }
    await call(publisher, 'connect', low);
    await call(publisher, 'connect', top);
    await call(publisher, 'connect', slow);
    if (plain) await call(publisher, 'connect', plain);
    const viewers = {};
    const all = [['low', low], ['top', top], ['slow', slow]].concat(plain ? [['plain', plain]] : []);
    for (const [name, ep] of all) {
      viewers[name] = await env.browser.newPage(`svc-${codec}-${name}`);
      const url = `${env.web.base}/hello-world.html`;
      // An AV1 viewer negotiates the dependency descriptor (Chromium offers it by default only
      // on a sending transceiver with a scalability mode), but for `plain`.
      const extensions = codec === 'AV1' && name !== 'plain' ? [DD] : [];
      const vOffer = await pageOffer(viewers[name], { publish: false, url, extensions });
      const vAnswer = await negotiate(viewers[name], ep, vOffer);
      if (codec === 'AV1') assert.equal(vAnswer.includes(DD), name !== 'plain', `${name}: the answer takes the descriptor or not`);
    }

    // Its bandwidth estimate must allow the top spatial layer: wait until it encodes it.
    const sent = await waitExplained(pubPage, async () => {
      const s = await sending(pubPage);
      return s.width === CAMERA.width ? s : null;
    }, 40000, `the publisher encoding ${CAMERA.width} wide`);
    log(`publisher encodes ${JSON.stringify(sent)}`);
    assert.equal(sent.codec, mime);
    assert.equal(sent.mode, 'L3T3_KEY');

    const decoded = async (page, width, what) => waitExplained(pubPage, async () => {
      const s = await pageStats(page);
      return s.frameWidth === width && s.framesDecoded > 10 ? s : null;
    }, 30000, what);
    const s0 = CAMERA.width / 4;
    const lowSeen = await decoded(viewers.low, s0, `the limited viewer decoding ${s0} wide (S0)`);
    const topSeen = await decoded(viewers.top, CAMERA.width, `the other decoding ${CAMERA.width} wide (S2)`);
    const slowSeen = await waitExplained(pubPage, async () => {
      const s = await pageStats(viewers.slow);
      return s.frameWidth === CAMERA.width && s.framesDecoded > 3 ? s : null;
    }, 30000, `the viewer capped to T0 decoding ${CAMERA.width} wide`);
    log(`slow decodes ${JSON.stringify(slowSeen)}`);
    const slowLayer = await outboundLayer(slow);
    assert.deepEqual([slowLayer.layer, slowLayer.temporalLayer], [2, 0], JSON.stringify(slowLayer));
    log(`low decodes ${JSON.stringify(lowSeen)}, top ${JSON.stringify(topSeen)}`);
    const lowLayer = await outboundLayer(low);
    assert.deepEqual([lowLayer.rid, lowLayer.layer, lowLayer.width], ['', 0, s0], JSON.stringify(lowLayer));
    const topLayer = await outboundLayer(top);
    assert.deepEqual([topLayer.layer, topLayer.width], [2, CAMERA.width], JSON.stringify(topLayer));

    // Both keep decoding, at their own sizes.
    const before = { low: await pageStats(viewers.low), top: await pageStats(viewers.top), slow: await pageStats(viewers.slow) };
    await new Promise((r) => setTimeout(r, 4000));
    // T0 only: a quarter of the pictures (T0 T2 T1 T2), at the top width, decoding on.
    const slowNow = await pageStats(viewers.slow);
    const topNow = await pageStats(viewers.top);
    const slowFrames = slowNow.framesDecoded - before.slow.framesDecoded;
    const topFrames = topNow.framesDecoded - before.top.framesDecoded;
    log(`slow: ${slowFrames} frames in 4 s (${slowNow.framesPerSecond} fps), top ${topFrames} (${topNow.framesPerSecond} fps)`);
    // (What Fluo forwards it and what the publisher sends, for a run where it is not the top.)
    const slowWhy = async () => JSON.stringify({ layer: await outboundLayer(slow), publisher: await sending(pubPage) });
    assert.equal(slowNow.frameWidth, CAMERA.width, slowNow.frameWidth === CAMERA.width ? '' : await slowWhy());
    assert.ok(slowFrames >= 5, `the capped viewer decodes on: ${slowFrames}`);
    assert.ok(slowFrames * 2 < topFrames, `at a lower frame rate: ${slowFrames} against ${topFrames}`);
    assert.ok(slowNow.framesPerSecond < topNow.framesPerSecond, `framesPerSecond ${slowNow.framesPerSecond} against ${topNow.framesPerSecond}`);
    assert.ok(slowNow.freezeCount - before.slow.freezeCount <= 1, 'slow: freezes bounded');
    for (const name of ['low', 'top']) {
      const now = await pageStats(viewers[name]);
      log(`${name}: ${JSON.stringify(before[name])} -> 4 s later ${JSON.stringify(now)}`);
      assert.equal(now.frameWidth, name === 'low' ? s0 : CAMERA.width);
      assert.ok(now.framesDecoded - before[name].framesDecoded >= 20, `${name} decodes on`);
      assert.ok(now.freezeCount - before[name].freezeCount <= 1, `${name}: freezes bounded`);
    }
    assert.ok(changes.length >= 1 && changes[0].layer === 0 && changes[0].rid === '' && changes[0].reason === 'START', JSON.stringify(changes));

    if (plain) {
      // Without the descriptor: S0 (every temporal layer), decoding on, told why.
      const seen = await decoded(viewers.plain, s0, `the viewer without the descriptor decoding ${s0} wide (S0)`);
      const layer = await outboundLayer(plain);
      assert.deepEqual([layer.layer, layer.width, layer.reason], [0, s0, 'NO_DEPENDENCY_DESCRIPTOR'], JSON.stringify(layer));
      // A higher limit changes nothing for it.
      await call(plain, 'addTag', 'fluoMaxVideoLayer', '2');
      await new Promise((r) => setTimeout(r, 3000));
      const now = await pageStats(viewers.plain);
      log(`plain (no descriptor): ${JSON.stringify(seen)} -> ${JSON.stringify(now)}`);
      assert.equal(now.frameWidth, s0);
      assert.ok(now.framesDecoded - seen.framesDecoded >= 15, `plain decodes on: ${seen.framesDecoded} -> ${now.framesDecoded}`);
      assert.ok(now.freezeCount - seen.freezeCount <= 1, 'plain: freezes bounded');
      const still = await outboundLayer(plain);
      assert.deepEqual([still.layer, still.reason], [0, 'NO_DEPENDENCY_DESCRIPTOR'], JSON.stringify(still));
    }

    // The limit lifted: the top width at the next key picture, which Fluo asks for.
    await call(low, 'addTag', 'fluoMaxVideoLayer', '2');
    const moved = await decoded(viewers.low, CAMERA.width, `the viewer decoding ${CAMERA.width} wide after its limit was lifted`);
    log(`low after the tag: ${JSON.stringify(moved)}`);
    await waitFor(() => changes.find((c) => c.layer === 2 && c.reason === 'LIMIT'), 5000, 'FluoLayerChanged 2 LIMIT');
    assert.equal((await outboundLayer(low)).layer, 2);
    const later = await pageStats(viewers.low);
    await new Promise((r) => setTimeout(r, 2000));
    const end = await pageStats(viewers.low);
    assert.ok(end.framesDecoded - later.framesDecoded >= 10, 'it decodes on at the top');
    await call(pipeline, 'release');
  }));
}
