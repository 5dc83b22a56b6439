'use strict';
// A synthetic face for the face-detection tests (no photographs in the repository): a
// cartoon drawn with filled ellipses (hair, skin, brows, eyes, nose, mouth) on a grey
// background, which OpenCV's frontal-face Haar cascade detects. faceClip() writes a VP8 clip
// of it moving; solidImage() writes a one-colour PNG or JPEG with ffmpeg.
const { spawn, execFile } = require('node:child_process');

const BACKGROUND = [100, 100, 100];

function fillEllipse(buf, w, h, cx, cy, rx, ry, rgb) {
  const y0 = Math.max(0, Math.floor(cy - ry));
  const y1 = Math.min(h - 1, Math.ceil(cy + ry));
  for (let y = y0; y <= y1; y++) {
    const dy = (y - cy) / ry;
    if (dy * dy > 1) continue;
    const half = rx * Math.sqrt(1 - dy * dy);
    const x0 = Math.max(0, Math.ceil(cx - half));
    const x1 = Math.min(w - 1, Math.floor(cx + half));
    for (let x = x0; x <= x1; x++) {
      const i = (y * w + x) * 3;
      buf[i] = rgb[0];
      buf[i + 1] = rgb[1];
      buf[i + 2] = rgb[2];
    }
  }
}

// The face as ellipses, in face widths from its centre: [dx, dy, rx, ry, rgb], drawn in order.
const FACE_SHAPES = [
  [0, -0.12, 0.52, 0.6, [45, 32, 22]], // hair
  [0, 0.05, 0.44, 0.56, [222, 184, 150]], // skin
  ...[-1, 1].flatMap((side) => [
    [side * 0.18, -0.17, 0.13, 0.035, [55, 38, 28]], // brow
    [side * 0.18, -0.07, 0.1, 0.05, [245, 245, 245]], // eye white
    [side * 0.18, -0.07, 0.045, 0.045, [25, 25, 25]], // pupil
  ]),
  [0, 0.1, 0.06, 0.12, [200, 160, 128]], // nose
  [0, 0.31, 0.16, 0.045, [140, 45, 45]], // mouth
];

// One face of width `s` centred at (cx, cy) into an RGB24 frame.
function drawFace(buf, w, h, cx, cy, s) {
  for (const [dx, dy, rx, ry, rgb] of FACE_SHAPES) {
    fillEllipse(buf, w, h, cx + dx * s, cy + dy * s, rx * s, ry * s, rgb);
  }
}

// Writes a VP8 WebM (or, with y4m, a raw YUV4MPEG2 file: Chromium's fake camera reads
// those) of `seconds` at 30 fps, `size` [w, h], a face of width `s` centred at at(t) = {x, y}
// (or no face where at(t) is null).
function faceClip(file, { seconds = 3, size = [320, 240], s = 80, at, y4m = false }) {
  const [w, h] = size;
  const out = y4m ? ['-pix_fmt', 'yuv420p', '-f', 'yuv4mpegpipe']
    : ['-c:v', 'libvpx', '-b:v', '800k', '-deadline', 'realtime', '-cpu-used', '8', '-g', '30', '-f', 'webm'];
  const ff = spawn('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-nostdin', '-y',
    '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', `${w}x${h}`, '-r', '30', '-i', '-',
    ...out, file], { stdio: ['pipe', 'inherit', 'inherit'] });
  const done = new Promise((resolve, reject) => {
    ff.on('error', reject);
    ff.on('exit', (code) => (code === 0 ? resolve(file) : reject(new Error(`ffmpeg exited ${code}`))));
  });
  const frames = Math.round(seconds * 30);
  (async () => {
    for (let f = 0; f < frames; f++) {
      const buf = Buffer.alloc(w * h * 3);
      for (let i = 0; i < buf.length; i += 3) buf.set(BACKGROUND, i);
      const p = at(f / 30);
      if (p) drawFace(buf, w, h, p.x, p.y, s);
      if (!ff.stdin.write(buf)) await new Promise((r) => ff.stdin.once('drain', r));
    }
    ff.stdin.end();
  })();
  return done;
}

// A w x h image of one colour `hex` (RRGGBB or RRGGBBAA) as PNG or JPEG (by the file's name).
function solidImage(file, hex, [w, h] = [16, 16]) {
  const rgba = hex.length === 8;
  return new Promise((resolve, reject) => {
    execFile('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-nostdin', '-y',
      '-f', 'lavfi', '-i', `color=c=0x${hex}:s=${w}x${h}${rgba ? ',format=rgba' : ''}`,
      '-frames:v', '1', ...(rgba ? ['-pix_fmt', 'rgba'] : []), file], (e) => (e ? reject(e) : resolve(file)));
  });
}

module.exports = { faceClip, solidImage };
