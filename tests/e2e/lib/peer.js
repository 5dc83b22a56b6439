'use strict';
// Pages that are WebRTC peers of a WebRtcEndpoint made with kurento-client (the simulcast and
// bandwidth tests): the page makes its RTCPeerConnection (window.pc), Fluo answers its offer.
//
//   call(object, method, ...args)     kurento-client's callback API as a promise
//   offer(page, {publish, simulcast, camera, url})
//                                     -> the page's offer: `publish` sends its fake camera
//                                        (`camera` {width, height}, 15 fps; with `simulcast`
//                                        in rids q, h, f: scaleResolutionDownBy 4, 2, 1;
//                                        degradationPreference 'maintain-resolution');
//                                        otherwise receive-only video shown in a <video>.
//                                        `url`: where the page is loaded first
//   negotiate(page, endpoint, sdp)    -> Fluo's answer, applied, candidates exchanged
//   pageStats(page)                   -> what the page sends per rid (`sent[rid]`, a plain
//                                        sender's `sent.none`), its bandwidth estimate, the
//                                        video it decodes
//   publisherSettings(page)           -> its sender's degradation preference and camera size
//   waitExplained(pubPage, fn, ms, what)
//                                     waitFor; its timeout says what the publisher sends
//                                        and why, its estimate and the load average
//   trace(fn, everyMs)                -> {samples, now(), until(pred, ms, what), stop()}: runs
//                                        `fn()` every `everyMs` (one at a time) and keeps what
//                                        it gives with `at`, ms since the trace began;
//                                        until() waits for a sample pred(sample, i) takes and
//                                        gives its `at`, its timeout the last samples
//   outboundLayer(endpoint)           -> getStats' fluoLayer of a viewer's outbound video
//   videoStats(endpoint, type)        -> its getStats entry of that type ('inboundrtp',
//                                        'outboundrtp') for VIDEO

const os = require('node:os');
const path = require('node:path');
const { waitFor, sleep } = require('./env');

const kurento = require(path.resolve(__dirname, '../../../web/node_modules/kurento-client'));

function call(object, method, ...args) {
  return new Promise((resolve, reject) => {
    object[method](...args, (error, result) => (error ? reject(error) : resolve(result)));
  });
}

// `extensions`: header extension URIs a viewer's offer negotiates besides Chromium's default
// ones (`setHeaderExtensionsToNegotiate`), e.g. the dependency descriptor, which Chromium
// offers by default only on a sending transceiver with a scalability mode.
async function offer(page, { publish = false, simulcast = true, camera = null, url = null, extensions = [] } = {}) {
  if (url) await page.goto(url);
  return page.evaluate(async ({ publish, simulcast, camera, extensions }) => {
    const pc = new RTCPeerConnection();
    window.pc = pc;
    window.candidates = [];
    pc.onicecandidate = (e) => e.candidate && window.candidates.push(e.candidate.toJSON());
    if (publish) {
      const stream = await navigator.mediaDevices.getUserMedia({
        video: { width: { exact: camera.width }, height: { exact: camera.height }, frameRate: 15 },
      });
      const { sender } = pc.addTransceiver(stream.getVideoTracks()[0], {
        direction: 'sendonly',
        ...(simulcast ? {
          sendEncodings: [
            { rid: 'q', scaleResolutionDownBy: 4 },
            { rid: 'h', scaleResolutionDownBy: 2 },
            { rid: 'f' },
          ],
        } : {}),
      });
      const p = sender.getParameters();
      p.degradationPreference = 'maintain-resolution';
      await sender.setParameters(p);
    } else {
      const t = pc.addTransceiver('video', { direction: 'recvonly' });
      if (extensions.length) {
        const exts = t.getHeaderExtensionsToNegotiate();
        for (const e of exts) if (extensions.includes(e.uri)) e.direction = 'sendrecv';
        t.setHeaderExtensionsToNegotiate(exts);
      }
      pc.ontrack = (e) => {
        const v = document.createElement('video');
        v.autoplay = true;
        v.muted = true;
        v.srcObject = e.streams[0] || new MediaStream([e.track]);
        document.body.appendChild(v);
      };
    }
    const o = await pc.createOffer();
    await pc.setLocalDescription(o);
    return o.sdp;
  }, { publish, simulcast, camera, extensions });
}

async function publisherSettings(page) {
  return page.evaluate(() => {
    const sender = window.pc.getSenders()[0];
    const { width, height, frameRate } = sender.track.getSettings();
    return { degradationPreference: sender.getParameters().degradationPreference, width, height, frameRate };
  });
}

async function negotiate(page, endpoint, sdp) {
  endpoint.on('IceCandidateFound', (e) => {
    page.evaluate((c) => window.pc.addIceCandidate(c), e.candidate).catch(() => {});
  });
  const answer = await call(endpoint, 'processOffer', sdp);
  await page.evaluate((s) => window.pc.setRemoteDescription({ type: 'answer', sdp: s }), answer);
  await call(endpoint, 'gatherCandidates');
  for (const c of await page.evaluate(() => window.candidates)) {
    await call(endpoint, 'addIceCandidate', kurento.getComplexType('IceCandidate')(c));
  }
  return answer;
}

// `bytesSent` and `at` (ms, the entry's timestamp) give bitrates between two calls.
async function pageStats(page) {
  return page.evaluate(async () => {
    const out = { ice: window.pc.iceConnectionState, sent: {}, bwe: null, frameWidth: 0, framesDecoded: 0, keyFramesDecoded: 0, pliCount: 0, freezeCount: 0, bytesReceived: 0 };
    (await window.pc.getStats()).forEach((s) => {
      if (s.type === 'outbound-rtp' && s.kind === 'video') {
        out.sent[s.rid || 'none'] = {
          width: s.frameWidth || 0,
          fps: s.framesPerSecond || 0,
          packets: s.packetsSent,
          bytesSent: s.bytesSent,
          at: s.timestamp,
          limit: s.qualityLimitationReason,
          resolutionChanges: s.qualityLimitationResolutionChanges,
          targetBitrate: s.targetBitrate,
          keyFrames: s.keyFramesEncoded,
          plis: s.pliCount,
        };
      }
      if (s.type === 'candidate-pair' && s.nominated && s.availableOutgoingBitrate) out.bwe = s.availableOutgoingBitrate;
      if (s.type === 'inbound-rtp' && s.kind === 'video') {
        out.frameWidth = s.frameWidth || 0;
        out.framesDecoded = s.framesDecoded || 0;
        out.framesPerSecond = s.framesPerSecond || 0;
        out.keyFramesDecoded = s.keyFramesDecoded || 0;
        out.pliCount = s.pliCount || 0;
        out.freezeCount = s.freezeCount || 0;
        out.bytesReceived = s.bytesReceived || 0;
      }
    });
    return out;
  });
}

async function waitExplained(pubPage, fn, ms, what) {
  try {
    return await waitFor(fn, ms, what);
  } catch (e) {
    const s = await pageStats(pubPage).catch((x) => ({ error: x.message }));
    const set = await publisherSettings(pubPage).catch((x) => ({ error: x.message }));
    const load = os.loadavg().map((x) => x.toFixed(1)).join(' ');
    throw new Error(`${e.message}; the publisher sends ${JSON.stringify(s.sent || s)}, its bandwidth estimate ${s.bwe} bit/s, its sender ${JSON.stringify(set)}; load average ${load}`);
  }
}

function trace(fn, everyMs = 500) {
  const samples = [];
  const t0 = Date.now();
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      const at = Date.now() - t0;
      const s = await fn().catch((e) => ({ error: e.message }));
      if (s) samples.push({ at, ...s });
      await sleep(everyMs);
    }
  })();
  async function until(pred, ms, what) {
    const deadline = Date.now() + ms;
    let seen = 0;
    for (;;) {
      for (; seen < samples.length; seen++) if (pred(samples[seen], seen)) return samples[seen].at;
      if (Date.now() > deadline) {
        const load = os.loadavg()[0].toFixed(1);
        throw new Error(`timed out after ${ms} ms waiting for ${what}; last samples ${JSON.stringify(samples.slice(-8))}; load ${load}`);
      }
      await sleep(50);
    }
  }
  return {
    samples,
    now: () => Date.now() - t0,
    until,
    stop: async () => {
      stopped = true;
      await loop;
    },
  };
}

async function videoStats(endpoint, type) {
  const all = await call(endpoint, 'getStats', 'VIDEO');
  return Object.values(all).find((s) => s.type === type);
}

async function outboundLayer(endpoint) {
  const out = await videoStats(endpoint, 'outboundrtp');
  return out && out.fluoLayer;
}

module.exports = { kurento, call, offer, negotiate, pageStats, publisherSettings, waitExplained, trace, videoStats, outboundLayer };
