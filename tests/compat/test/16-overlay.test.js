'use strict';
// ImageOverlayFilter and FaceOverlayFilter through the official client: their methods and
// the errors of bad arguments and URIs (40107), images that cannot be read raising Error
// events, and with media: a player's clip through the filter into a recorder, the decoded
// frames' pixels checked where the fractions (or the detected face) put the images.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync, execFile } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const h = require('./helpers');
const { serveDir, fileUri, eventLog } = require('./media');
const { faceClip, solidImage } = require('./face');

let server;
let client;
let pipeline;
let dir;
let web;
let raw;

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fluo-compat-overlay-'));
  web = await serveDir(dir);
  server = await h.startServer();
  client = (await h.connectClient(server.url)).client;
  raw = await h.RawClient.open(server.url);
  pipeline = await client.create('MediaPipeline');
});

after(async () => {
  if (raw) raw.ws.close();
  if (pipeline) await pipeline.release().catch(() => {});
  await h.closeClient(client);
  if (server) await server.stop();
  if (web) await web.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

const T = { timeout: 60000 };
const W = 320;
const H = 240;
const call = (o, m, ...a) => h.callback(o, m, ...a);

// kurento-client 7.3.0 cannot send addImage or removeImage: its serializeParams replaces
// an invoke's operationParams that has an `id` (the image's) by that id, a string (see the
// test below). They are sent as JSON-RPC here, as another client sends them; the answer's
// error becomes an Error with its code, as kurento-client's.
async function invokeRaw(obj, operation, operationParams, rawClient = raw) {
  const r = await rawClient.call('invoke', { object: obj.id, operation, operationParams });
  if (r.error) throw Object.assign(new Error(r.error.message), { code: r.error.code });
  return r.result;
}
const addImage = (f, id, uri, x, y, w, hh, keepAspectRatio, center, rawClient) => invokeRaw(f, 'addImage',
  { id, uri, offsetXPercent: x, offsetYPercent: y, widthPercent: w, heightPercent: hh, keepAspectRatio, center }, rawClient);
const removeImage = (f, id) => invokeRaw(f, 'removeImage', { id });

// A grey clip of `seconds`, 320x240, 30 fps, VP8.
function greyClip(file, seconds) {
  return new Promise((resolve, reject) => execFile('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-nostdin', '-y',
    '-f', 'lavfi', '-i', `color=c=0x646464:s=${W}x${H}:r=30`, '-t', String(seconds),
    '-c:v', 'libvpx', '-b:v', '800k', '-deadline', 'realtime', '-cpu-used', '8', '-g', '30', '-f', 'webm', file],
  (e) => (e ? reject(e) : resolve(file))));
}

// The decoded frames of `file` (RGB24, W x H), in order.
function frames(file) {
  const raw = execFileSync('ffmpeg', ['-loglevel', 'error', '-i', file, '-an', '-vf', `scale=${W}:${H}`,
    '-fps_mode', 'passthrough', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-'], { maxBuffer: 256 << 20 });
  const size = W * H * 3;
  const out = [];
  for (let f = 0; f + size <= raw.length; f += size) out.push(raw.subarray(f, f + size));
  return out;
}

const px = (frame, x, y) => {
  const i = (y * W + x) * 3;
  return [frame[i], frame[i + 1], frame[i + 2]];
};
const near = (got, want, tol = 40) => got.every((v, i) => Math.abs(v - want[i]) <= tol);
const GREY = [100, 100, 100];

// Plays `clip` through `filter` into a recording and returns its decoded frames; `during`
// runs once media flows out of the filter.
async function run(filter, clip, name, during = async () => {}) {
  const file = path.join(dir, name);
  const p = await pipeline.create('PlayerEndpoint', { uri: fileUri(clip) });
  const r = await pipeline.create('RecorderEndpoint', { uri: fileUri(file), mediaProfile: 'WEBM_VIDEO_ONLY' });
  const log = await eventLog(p, ['EndOfStream']);
  await p.connect(filter);
  await filter.connect(r);
  await r.record();
  await p.play();
  // (A filter used before may still be FLOWING: no new event then.)
  await h.waitFor(async () => (await r.isMediaFlowingIn('VIDEO')) || null, 10000, 'video into the recorder');
  await during();
  await log.wait('EndOfStream', 20000);
  // What the filter still holds (decoding, detecting, encoding) reaches the recorder.
  await h.sleep(1000);
  await r.stopAndWait();
  for (const o of [p, r]) await o.release();
  return frames(file);
}

test('ImageOverlayFilter: images drawn where the fractions say, PNG alpha blended, JPEG over http, removeImage', T, async () => {
  const clip = await greyClip(path.join(dir, 'grey.webm'), 3);
  await solidImage(path.join(dir, 'magenta.png'), 'ff00ff80');
  await solidImage(path.join(dir, 'green.jpg'), '00ff00', [32, 16]);
  const filter = await pipeline.create('ImageOverlayFilter');
  assert.equal(filter.constructor.name, 'ImageOverlayFilter');
  const errors = await eventLog(filter, ['Error']);
  // Half-transparent magenta stretched over x 160..240, y 60..180.
  await addImage(filter, 'a', fileUri(path.join(dir, 'magenta.png')), 0.5, 0.25, 0.25, 0.5, false, false);
  // A 2:1 image fitted (and centred) in the 80x60 box at the corner: x 0..80, y 10..50.
  await addImage(filter, 'b', `${web.base}/green.jpg`, 0, 0, 0.25, 0.25, true, true);
  const got = await run(filter, clip, 'image.webm', async () => {
    await h.sleep(1500);
    await removeImage(filter, 'a');
  });
  assert.ok(got.length >= 60, `${got.length} frames`);
  const MAGENTA_ON_GREY = [178, 50, 178];
  const GREEN = [0, 255, 0];
  const early = got.slice(10, 30);
  const last = got.slice(-10);
  for (const f of early) {
    assert.ok(near(px(f, 200, 120), MAGENTA_ON_GREY), `blended magenta inside the box: ${px(f, 200, 120)}`);
    assert.ok(near(px(f, 150, 120), GREY), `grey left of the box: ${px(f, 150, 120)}`);
    assert.ok(near(px(f, 200, 50), GREY), `grey above the box: ${px(f, 200, 50)}`);
  }
  for (const f of [...early, ...last]) {
    assert.ok(near(px(f, 40, 30), GREEN), `the JPEG fitted in its box: ${px(f, 40, 30)}`);
    assert.ok(near(px(f, 40, 4), GREY), `centred: grey above the fitted image: ${px(f, 40, 4)}`);
    assert.ok(near(px(f, 100, 30), GREY), `grey right of the box: ${px(f, 100, 30)}`);
  }
  for (const f of last) assert.ok(near(px(f, 200, 120), GREY), `removed: ${px(f, 200, 120)}`);
  assert.deepEqual(errors.of('Error'), []);
  await filter.release();
});

test('ImageOverlayFilter / FaceOverlayFilter: bad arguments and URIs are refused with 40107; removeImage of an unknown id answers as KMS', T, async () => {
  const png = await solidImage(path.join(dir, 'ok.png'), 'ff0000');
  const image = await pipeline.create('ImageOverlayFilter');
  const face = await pipeline.create('FaceOverlayFilter');
  assert.equal(face.constructor.name, 'FaceOverlayFilter');
  await addImage(image, 'x', fileUri(png), 0, 0, 0.5, 0.5, true, false);
  await removeImage(image, 'x');
  await removeImage(image, 'never-added');
  await call(face, 'setOverlayedImage', fileUri(png), -0.35, -1.2, 1.6, 1.6);
  await call(face, 'unsetOverlayedImage');
  for (const uri of ['not a uri', 'ftp://127.0.0.1/x.png', 'file://relative/x.png', 'file:///tmp/../etc/passwd']) {
    for (const p of [() => addImage(image, 'y', uri, 0, 0, 0.5, 0.5, false, false),
      () => call(face, 'setOverlayedImage', uri, 0, 0, 1, 1)]) {
      await assert.rejects(p(), (e) => {
        assert.equal(e.code, 40107, `${uri}: ${e.message}`);
        return true;
      });
    }
  }
  for (const args of [[11, 0, 0.5, 0.5], [0, -11, 0.5, 0.5], [0, 0, -0.1, 0.5], [0, 0, 0.5, 12]]) {
    await assert.rejects(addImage(image, 'z', fileUri(png), ...args, false, false), (e) => {
      assert.equal(e.code, 40107, `${args}: ${e.message}`);
      assert.match(e.message, /ImageOverlayFilter: addImage: \w+Percent must be a number from/);
      return true;
    });
    await assert.rejects(call(face, 'setOverlayedImage', fileUri(png), ...args), (e) => e.code === 40107);
  }
  for (const o of [image, face]) await o.release();
});

test('ImageOverlayFilter: kurento-client 7.3.0 sends addImage\'s arguments as the image id: the marshalling error', T, async () => {
  const image = await pipeline.create('ImageOverlayFilter');
  await assert.rejects(call(image, 'addImage', 'x', 'file:///x.png', 0, 0, 0.5, 0.5, true, false), (e) => {
    assert.match(e.message, /'operationParams' parameter should be a object/);
    return true;
  });
  await image.release();
});

test('ImageOverlayFilter / FaceOverlayFilter: a missing, unreadable or undecodable image raises an Error event; the method answers', T, async () => {
  fs.writeFileSync(path.join(dir, 'text.png'), 'this is not an image');
  const image = await pipeline.create('ImageOverlayFilter');
  const face = await pipeline.create('FaceOverlayFilter');
  const ie = await eventLog(image, ['Error']);
  const fe = await eventLog(face, ['Error']);
  const cases = [
    [fileUri(path.join(dir, 'nothing-here.png')), /does not exist/],
    [fileUri(path.join(dir, 'text.png')), /not a PNG or JPEG image/],
    [`${web.base}/missing.png`, /missing\.png cannot be drawn/],
  ];
  for (const [uri, why] of cases) {
    await addImage(image, 'i', uri, 0, 0, 0.5, 0.5, false, false);
    const ev = await ie.wait('Error', 15000, (d) => why.test(d.description));
    assert.match(ev.data.description, /^ImageOverlayFilter: the image /, ev.data.description);
    await call(face, 'setOverlayedImage', uri, 0, 0, 1, 1);
    await fe.wait('Error', 15000, (d) => why.test(d.description) && d.description.startsWith('FaceOverlayFilter'));
  }
  for (const o of [image, face]) await o.release();
});

test('ImageOverlayFilter: a URI outside the server\'s allow-list is refused with 40107', T, async () => {
  const allowed = path.join(dir, 'allowed');
  fs.mkdirSync(allowed, { recursive: true });
  const png = await solidImage(path.join(allowed, 'ok.png'), 'ff0000');
  const outside = await solidImage(path.join(dir, 'outside.png'), 'ff0000');
  const guarded = await h.startServer(['--uri-allow', `file://${allowed}/`]);
  const c2 = (await h.connectClient(guarded.url)).client;
  let raw2;
  try {
    const p2 = await c2.create('MediaPipeline');
    const image = await p2.create('ImageOverlayFilter');
    const errors = await eventLog(image, ['Error']);
    raw2 = await h.RawClient.open(guarded.url);
    await addImage(image, 'ok', fileUri(png), 0, 0, 0.5, 0.5, false, false, raw2);
    for (const uri of [fileUri(outside), `${web.base}/ok.png`]) {
      await assert.rejects(addImage(image, 'no', uri, 0, 0, 0.5, 0.5, false, false, raw2), (e) => {
        assert.equal(e.code, 40107, e.message);
        assert.match(e.message, /not allowed by this server's URI allow-list/);
        return true;
      });
    }
    await h.sleep(500);
    assert.deepEqual(errors.of('Error'), [], 'the allowed image loads');
    await p2.release();
  } finally {
    if (raw2) raw2.ws.close();
    await h.closeClient(c2);
    await guarded.stop();
  }
});

// The synthetic face: none for 1 s, then left (x 90) until 2.5 s, then right (x 230) until
// 4 s, then none again (the last frames, which a loaded machine may not record).
const FACE_Y = 150;
const faceAt = (t) => (t < 1 || t >= 4 ? null : { x: t < 2.5 ? 90 : 230, y: FACE_Y });
const BLUE = [0, 0, 255];
// Where the face's skin is, and a point the Magic Mirror's hat covers above it.
const skin = (f, x) => near(px(f, x, FACE_Y + 10), [222, 184, 150], 45);
const hat = (f, x) => near(px(f, x, FACE_Y - 75), BLUE, 70);

test('FaceOverlayFilter: the image goes above every detected face and follows it; no face, no image; unset removes it', T, async (t) => {
  const clip = await faceClip(path.join(dir, 'face.webm'), { seconds: 5, at: faceAt });
  await solidImage(path.join(dir, 'hat.png'), '0000ff');
  const face = await pipeline.create('FaceOverlayFilter');
  const errors = await eventLog(face, ['Error']);
  // The Magic Mirror tutorial's call.
  await face.setOverlayedImage(`${web.base}/hat.png`, -0.35, -1.2, 1.6, 1.6);
  const got = await run(face, clip, 'faces.webm');
  const left = got.filter((f) => skin(f, 90) && !skin(f, 230));
  const right = got.filter((f) => skin(f, 230) && !skin(f, 90));
  const none = got.filter((f) => !skin(f, 90) && !skin(f, 230));
  assert.ok(left.length >= 30 && right.length >= 30 && none.length >= 20,
    `frames with the face left ${left.length}, right ${right.length}, none ${none.length}`);
  const share = (fs_, x) => fs_.filter((f) => hat(f, x)).length / fs_.length;
  assert.ok(share(left, 90) >= 0.8, `the hat above the left face in ${share(left, 90)} of its frames`);
  assert.ok(share(right, 230) >= 0.8, `the hat above the right face in ${share(right, 230)} of its frames`);
  assert.equal(share(left, 230), 0, 'no hat where the face is not');
  assert.equal(share(right, 90), 0, 'the hat followed the face');
  const blueAnywhere = (f) => {
    for (let i = 0; i < f.length; i += 3) if (f[i + 2] > 200 && f[i] < 60 && f[i + 1] < 60) return true;
    return false;
  };
  assert.equal(none.filter(blueAnywhere).length, 0, 'no face, no image');
  t.diagnostic(`${got.length} frames: face left ${left.length} (hat above it in ${share(left, 90)}), right `
    + `${right.length} (${share(right, 230)}), none ${none.length}`);
  assert.deepEqual(errors.of('Error'), []);

  await face.unsetOverlayedImage();
  const after = await run(face, clip, 'unset.webm');
  const faces = after.filter((f) => skin(f, 90) || skin(f, 230)).length;
  assert.ok(faces >= 30, `${after.length} frames, ${faces} with the face`);
  assert.equal(after.filter(blueAnywhere).length, 0, 'unsetOverlayedImage: no image on any frame');
  await face.release();
});
