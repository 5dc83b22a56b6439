'use strict';
// Drives an installed Fluo (the .deb's, or the container image's) with the official
// kurento-client 7.3.0 of tests/compat: getInfo lists the package's WebAssembly module; a
// PlayerEndpoint plays a clip served over HTTP on 127.0.0.1 through a PointerDetectorFilter
// (the package's module, run by a media worker under the service's sandbox) into a
// WebRtcEndpoint, which negotiates with a second WebRtcEndpoint (ICE and DTLS on the server's
// real sockets), whose media a RecorderEndpoint writes into the folder the service may write
// to; the file is checked with ffprobe. Exits non-zero, saying why, when anything fails.
//   node tests/package/drive.js --url WS_URL --record-dir DIR_IN_SERVER --host-dir SAME_DIR_HERE
//                               [--ports MIN-MAX] [--owner UID]
// --ports: every UDP candidate's port must be in that range (KMS_MIN_PORT / KMS_MAX_PORT);
// --owner: the recording must belong to that user id (the service's user, or KMS_UID).
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const h = require('../compat/test/helpers');
const { makeClip, probe, serveDir, eventLog } = require('../compat/test/media');

// tests/compat's kurento-client (the one its helpers connect with) and its module for
// PointerDetectorFilter, registered before connecting (the client checks the server has it).
const compatRequire = require('node:module').createRequire(require.resolve('../compat/test/helpers'));
compatRequire('kurento-client').register('kurento-module-pointerdetector');
const { WindowParam } = compatRequire('kurento-module-pointerdetector').complexTypes;

function args() {
  const out = {};
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || argv[i + 1] === undefined) throw new Error(`bad arguments: ${argv.join(' ')}`);
    out[argv[i].slice(2)] = argv[i + 1];
  }
  for (const k of ['url', 'record-dir', 'host-dir']) if (!out[k]) throw new Error(`--${k} is required`);
  return out;
}

function udpPorts(candidates) {
  // candidate:FOUNDATION COMPONENT udp PRIORITY ADDRESS PORT typ ...
  return candidates
    .map((c) => c.candidate.split(' '))
    .filter((f) => f[2] && f[2].toLowerCase() === 'udp')
    .map((f) => Number(f[5]));
}

async function main() {
  const opt = args();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fluo-package-drive-'));
  let web;
  let client;
  try {
    const clip = await makeClip(path.join(dir, 'clip.webm'), { seconds: 10 });
    web = await serveDir(dir);
    client = (await h.connectClient(opt.url)).client;

    const info = await (await client.getServerManager()).getInfo();
    const modules = info.modules.map((m) => m.name);
    assert.ok(modules.includes('pointerdetector'), `getInfo's modules lack the package's pointerdetector: ${modules}`);
    console.log(`drive: server ${info.version}, modules ${modules.join(', ')}`);

    const pipeline = await client.create('MediaPipeline');
    const player = await pipeline.create('PlayerEndpoint', { uri: `${web.base}/${path.basename(clip)}` });
    const filter = await pipeline.create('PointerDetectorFilter', {
      calibrationRegion: WindowParam({ topRightCornerX: 10, topRightCornerY: 10, width: 30, height: 30 }),
    });
    const a = await pipeline.create('WebRtcEndpoint');
    const b = await pipeline.create('WebRtcEndpoint');
    const name = `package-test-${process.pid}.webm`;
    const recorder = await pipeline.create('RecorderEndpoint', {
      uri: `file://${opt['record-dir']}/${name}`,
      mediaProfile: 'WEBM',
    });
    await player.connect(filter);
    await filter.connect(a);
    await b.connect(recorder);
    const logA = await eventLog(a, ['IceCandidateFound']);
    const logB = await eventLog(b, ['IceCandidateFound', 'MediaFlowInStateChanged', 'Error']);
    const logP = await eventLog(player, ['Error']);
    a.on('IceCandidateFound', (e) => b.addIceCandidate(e.candidate));
    b.on('IceCandidateFound', (e) => a.addIceCandidate(e.candidate));
    await a.processAnswer(await b.processOffer(await a.generateOffer()));
    await a.gatherCandidates();
    await b.gatherCandidates();

    await player.play();
    await logB.wait('MediaFlowInStateChanged', 20000, (d) => d.mediaType === 'VIDEO' && d.state === 'FLOWING');
    assert.ok(await filter.isMediaFlowingOut('VIDEO'), 'video out of the PointerDetectorFilter');
    await recorder.record();
    await h.sleep(3000);
    const stats = await b.getStats('VIDEO');
    const inbound = Object.values(stats).find((s) => s.type === 'inboundrtp');
    assert.ok(inbound && inbound.packetsReceived > 50, `video received by the second endpoint: ${JSON.stringify(inbound)}`);
    await recorder.stopAndWait();
    assert.deepEqual(logP.of('Error').concat(logB.of('Error')), [], 'Error events');

    if (opt.ports) {
      const [min, max] = opt.ports.split('-').map(Number);
      const ports = udpPorts(logA.of('IceCandidateFound').concat(logB.of('IceCandidateFound')).map((e) => e.data.candidate));
      assert.ok(ports.length > 0, 'no UDP candidate');
      for (const p of ports) assert.ok(p >= min && p <= max, `UDP candidate port ${p} outside ${opt.ports}`);
      console.log(`drive: UDP candidate ports ${[...new Set(ports)].join(', ')} within ${opt.ports}`);
    }

    const file = path.join(opt['host-dir'], name);
    const rec = await probe(file);
    assert.deepEqual(rec.streams, ['audio:opus', 'video:vp8'], `${file}: ${JSON.stringify(rec)}`);
    assert.ok(rec.duration >= 2, `${file}: ${rec.duration} s for 3 s recorded`);
    const owner = fs.statSync(file).uid;
    if (opt.owner !== undefined) assert.equal(owner, Number(opt.owner), `${file}'s owner`);
    console.log(`drive: recorded ${file}: ${rec.streams.join(', ')}, ${rec.duration.toFixed(1)} s, uid ${owner}`);
    await pipeline.release();
  } finally {
    await h.closeClient(client);
    if (web) await web.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(`drive: FAILED: ${err.stack || err}`);
    process.exit(1);
  },
);
