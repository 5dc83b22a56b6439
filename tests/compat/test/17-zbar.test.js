'use strict';
// ZBarFilter through the official client: a clip made here (white, a QR code, another QR
// code, an EAN-13 barcode drawn here, the first QR code again) played by a PlayerEndpoint
// into a ZBarFilter whose output is recorded. The CodeFound events must be exactly those KMS
// raises (its ZBarFilterImpl: a code is raised when its type or value differs from the last
// one raised, or a second or more of the stream after it: once a second while it stays in
// view), with zbar's type names and the codes' values; the recording holds the video and the
// audio that passed. With the default media workers and with --workers 0; then a media
// worker killed under the filter gives its client the filter's Error event.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const h = require('./helpers');
const { probe, fileUri, eventLog } = require('./media');
const { run } = require('./tones');

let server;
let client;
let dir;
let clip;

const W = 480;
const H = 320;
const QR_A = 'fluo-zbar-A';
const QR_B = 'https://fluo.example/zbar/B?x=1';
const EAN = ean13('400638133393');

// The clip's segments: [from, to) seconds and what shows. The events KMS raises for them:
// each code at its first frame, then again each second while it stays (2.5 s: 3 events,
// 1.5 s: 2), the first code again at once after the others (another value than the last).
const SEGMENTS = [
  [1.0, 3.5, 'a'],
  [3.5, 5.0, 'b'],
  [5.0, 6.5, 'ean'],
  [6.5, 7.0, 'a'],
];
const SECONDS = 7.5;
const EXPECTED = [
  ...Array(3).fill(['QR-Code', QR_A]),
  ...Array(2).fill(['QR-Code', QR_B]),
  ...Array(2).fill(['EAN-13', EAN.value]),
  ['QR-Code', QR_A],
];

// An EAN-13 barcode of the 12 digits `d12` and its check digit: a W x H grey picture (PGM)
// of its 95 modules, 3 pixels each, centred on white.
function ean13(d12) {
  const L = ['0001101', '0011001', '0010011', '0111101', '0100011', '0110001', '0101111', '0111011', '0110111', '0001011'];
  const R = L.map((c) => [...c].map((b) => (b === '1' ? '0' : '1')).join(''));
  const G = R.map((c) => [...c].reverse().join(''));
  const parity = ['LLLLLL', 'LLGLGG', 'LLGGLG', 'LLGGGL', 'LGLLGG', 'LGGLLG', 'LGGGLL', 'LGLGLG', 'LGLGGL', 'LGGLGL'];
  const d = [...d12].map(Number);
  const sum = d.reduce((s, x, i) => s + x * (i % 2 ? 3 : 1), 0);
  d.push((10 - (sum % 10)) % 10);
  let bits = '101';
  for (let i = 1; i <= 6; i++) bits += (parity[d[0]][i - 1] === 'L' ? L : G)[d[i]];
  bits += '01010';
  for (let i = 7; i <= 12; i++) bits += R[d[i]];
  bits += '101';
  const px = Buffer.alloc(W * H, 255);
  const x0 = Math.floor((W - bits.length * 3) / 2);
  for (let y = 60; y < H - 60; y++) {
    for (let m = 0; m < bits.length; m++) {
      if (bits[m] === '1') px.fill(0, y * W + x0 + m * 3, y * W + x0 + m * 3 + 3);
    }
  }
  return { value: d.join(''), pgm: Buffer.concat([Buffer.from(`P5\n${W} ${H}\n255\n`), px]) };
}

async function makeClip(file) {
  const a = path.join(dir, 'a.png');
  const b = path.join(dir, 'b.png');
  const e = path.join(dir, 'ean.pgm');
  await run('qrencode', ['-o', a, '-s', '8', '-m', '4', QR_A]);
  await run('qrencode', ['-o', b, '-s', '6', '-m', '4', QR_B]);
  fs.writeFileSync(e, EAN.pgm);
  const input = { a: 1, b: 2, ean: 3 };
  const chain = [];
  let last = '0';
  SEGMENTS.forEach(([from, to, what], i) => {
    const pic = what === 'a' ? `a${i}` : String(input[what]);
    const next = `v${i}`;
    const at = what === 'ean' ? '0:0' : '(W-w)/2:(H-h)/2';
    chain.push(`[${last}][${pic}]overlay=${at}:enable='gte(t,${from})*lt(t,${to})'[${next}]`);
    last = next;
  });
  const uses = SEGMENTS.map(([, , w], i) => (w === 'a' ? `[a${i}]` : '')).join('');
  const graph = [`[1]split=${SEGMENTS.filter(([, , w]) => w === 'a').length}${uses}`, ...chain].join(';');
  await run('ffmpeg', [
    '-hide_banner', '-loglevel', 'error', '-nostdin', '-y',
    '-f', 'lavfi', '-i', `color=c=white:s=${W}x${H}:r=30`,
    '-loop', '1', '-i', a, '-loop', '1', '-i', b, '-loop', '1', '-i', e,
    '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000',
    '-filter_complex', graph, '-map', `[${last}]`, '-map', '4:a', '-t', String(SECONDS),
    '-c:v', 'libvpx', '-b:v', '1M', '-deadline', 'realtime', '-cpu-used', '8', '-g', '15', '-pix_fmt', 'yuv420p',
    '-c:a', 'libopus', '-b:a', '48k', '-f', 'webm', file,
  ]);
  return file;
}

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fluo-compat-zbar-'));
  clip = await makeClip(path.join(dir, 'codes.webm'));
  server = await h.startServer();
  client = (await h.connectClient(server.url)).client;
});

after(async () => {
  await h.closeClient(client);
  if (server) await server.stop();
  if (dir && !process.env.FLUO_KEEP) fs.rmSync(dir, { recursive: true, force: true });
});

const T = { timeout: h.TEST_TIMEOUT };
const TM = { timeout: 60000 };

test('ZBarFilter: created with its pipeline, CodeFound subscribed', T, async () => {
  const pipeline = await client.create('MediaPipeline');
  const z = await pipeline.create('ZBarFilter');
  assert.equal(z.constructor.name, 'ZBarFilter');
  assert.ok(z.id.endsWith('_kurento.ZBarFilter'), z.id);
  assert.ok(z.id.startsWith(`${pipeline.id}/`), z.id);
  await eventLog(z, ['CodeFound', 'Error']);
  await pipeline.release();
});

// The clip through a ZBarFilter into a recorder, on `srv`'s client `c`.
async function codes(c, label) {
  const pipeline = await c.create('MediaPipeline');
  const player = await pipeline.create('PlayerEndpoint', { uri: fileUri(clip), useEncodedMedia: true });
  const zbar = await pipeline.create('ZBarFilter');
  const file = path.join(dir, `out-${label}.webm`);
  const rec = await pipeline.create('RecorderEndpoint', { uri: fileUri(file), mediaProfile: 'WEBM' });
  const zlog = await eventLog(zbar, ['CodeFound', 'Error']);
  const plog = await eventLog(player, ['EndOfStream']);
  const rlog = await eventLog(rec, ['MediaFlowInStateChanged']);
  await player.connect(zbar);
  await zbar.connect(rec);
  await rec.record();
  await player.play();
  await rlog.wait('MediaFlowInStateChanged', 15000, (e) => e.state === 'FLOWING' && e.mediaType === 'VIDEO');
  await plog.wait('EndOfStream', 30000);
  await h.sleep(1000);
  await rec.stopAndWait();
  const found = zlog.of('CodeFound');
  const seen = found.map((e) => [e.data.codeType, e.data.value]);
  const t0 = found.length ? found[0].at : 0;
  const shown = found.slice(0, 20).map((e) => [e.data.value.slice(0, 12), e.at - t0]);
  console.log(`zbar ${label}: ${found.length} CodeFound, ms after the first: ${JSON.stringify(shown)}`);
  // The codes in order, each raised at once; a code in view again each second. The
  // timestamps are the frames' arrival at the filter, so on a loaded machine a stall or a
  // burst can add or take one repeat from a segment: each run may differ by one.
  const runs = (list) => list.reduce((acc, [t, v]) => {
    const last = acc[acc.length - 1];
    if (last && last.t === t && last.v === v) last.n += 1;
    else acc.push({ t, v, n: 1 });
    return acc;
  }, []);
  const got = runs(seen);
  const want = runs(EXPECTED);
  assert.deepEqual(got.map(({ t, v }) => [t, v]), want.map(({ t, v }) => [t, v]), JSON.stringify(seen));
  got.forEach((r, i) => assert.ok(Math.abs(r.n - want[i].n) <= 1, `${r.v.slice(0, 12)} raised ${r.n} times, ${want[i].n} expected: ${JSON.stringify(seen)}`));
  assert.deepEqual(zlog.of('Error'), []);
  for (const { data } of found) {
    const source = typeof data.source === 'string' ? data.source : data.source && data.source.id;
    assert.equal(source, zbar.id);
    assert.equal(data.type, 'CodeFound');
    assert.match(data.timestampMillis, /^\d+$/);
    assert.deepEqual(data.tags, []);
  }
  // The filter's output: the video (VP8, as it came) and the audio that passed it.
  const info = await probe(file);
  assert.deepEqual(info.streams, ['audio:opus', 'video:vp8'], JSON.stringify(info));
  assert.ok(info.duration > 4, JSON.stringify(info));
  await pipeline.release();
}

test('CodeFound as KMS raises them, media through media workers', TM, async () => {
  await codes(client, 'workers');
});

test('CodeFound as KMS raises them, with --workers 0 (the pipeline in the server process)', TM, async () => {
  const local = await h.startServer(['--workers', '0']);
  const c = (await h.connectClient(local.url)).client;
  try {
    await codes(c, 'local');
  } finally {
    await h.closeClient(c);
    await local.stop();
  }
});

// The server's media worker processes (its children running `fluo worker`).
function workers(pid) {
  const kids = [];
  for (const task of fs.readdirSync(`/proc/${pid}/task`)) {
    const text = fs.readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim();
    if (text) kids.push(...text.split(/\s+/).map(Number));
  }
  return kids.filter((k) => {
    try {
      return fs.readFileSync(`/proc/${k}/cmdline`, 'utf8').split('\0').includes('worker');
    } catch (_) {
      return false;
    }
  });
}

test('a media worker killed under the filter: its Error event (40003, ZBAR_FILTER_ERROR)', TM, async () => {
  const pipeline = await client.create('MediaPipeline');
  const player = await pipeline.create('PlayerEndpoint', { uri: fileUri(clip), useEncodedMedia: true });
  const zbar = await pipeline.create('ZBarFilter');
  const zlog = await eventLog(zbar, ['CodeFound', 'Error']);
  await player.connect(zbar);
  await player.play();
  await zlog.wait('CodeFound', 15000);
  const pids = workers(server.pid);
  assert.ok(pids.length > 0, 'the server has media workers');
  for (const p of pids) process.kill(p, 'SIGKILL');
  const ev = await zlog.wait('Error', 5000);
  assert.equal(ev.data.errorCode, 40003, JSON.stringify(ev.data));
  assert.equal(ev.data.type, 'ZBAR_FILTER_ERROR', JSON.stringify(ev.data));
  assert.match(ev.data.description, /killed/, ev.data.description);
  await pipeline.release();
});
