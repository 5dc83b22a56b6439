'use strict';
// Media helpers of the hub tests (Composite, AlphaBlending, Mixer): clips of one solid colour
// with a sine tone of their own, and what a recording's last frame and audio hold (a pixel's
// colour, a tone's level by a single-bin DFT).
const { execFile } = require('node:child_process');

function run(cmd, args, encoding = 'utf8') {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { maxBuffer: 128 << 20, encoding }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${cmd} ${args.join(' ')}: ${(stderr || error.message).toString().trim()}`));
      else resolve({ stdout, stderr });
    });
  });
}

// A clip of one solid colour at `size` and a loud sine tone of `freq` Hz (amplitude 0.8:
// two of them summed without normalisation would clip).
async function toneClip(file, colour, size, freq, seconds) {
  await run('ffmpeg', [
    '-hide_banner', '-loglevel', 'error', '-nostdin', '-y',
    '-f', 'lavfi', '-i', `color=c=${colour}:size=${size}:rate=30`,
    '-f', 'lavfi', '-i', `aevalsrc=0.8*sin(2*PI*${freq}*t):s=48000`,
    '-t', String(seconds),
    '-c:v', 'libvpx', '-b:v', '300k', '-deadline', 'realtime', '-cpu-used', '8', '-g', '30',
    '-c:a', 'libopus', '-b:a', '64k', '-f', 'webm', file,
  ]);
  return file;
}

// "WxH" of `file`'s video.
async function frameSize(file) {
  const { stdout } = await run('ffprobe', ['-v', 'error', '-select_streams', 'v', '-show_entries', 'stream=width,height', '-of', 'csv=p=0:s=x', file]);
  return stdout.trim();
}

// The last decoded RGB frame of `file`, whose video is `w`x`h`.
async function lastFrame(file, w, h) {
  const { stdout } = await run('ffmpeg', [
    '-v', 'error', '-nostdin', '-sseof', '-3', '-i', file, '-fps_mode', 'passthrough',
    '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-',
  ], 'buffer');
  return stdout.subarray(Math.max(0, stdout.length - w * h * 3));
}

// The colour at (x, y) of a frame `w` pixels wide, by name where it is one of the clips'.
function colourAt(frame, w, x, y) {
  const i = (Math.round(y) * w + Math.round(x)) * 3;
  const [r, g, b] = [frame[i], frame[i + 1], frame[i + 2]];
  if (r < 50 && g < 50 && b < 50) return 'black';
  if (r > 150 && g < 90 && b < 90) return 'red';
  if (b > 150 && r < 90 && g < 90) return 'blue';
  if (g > 90 && r < 70 && b < 70) return 'green';
  return `rgb(${r},${g},${b})`;
}

// The left channel's float samples of the last `seconds` of `file`'s audio.
async function lastAudio(file, seconds) {
  const { stdout } = await run('ffmpeg', [
    '-v', 'error', '-nostdin', '-sseof', `-${seconds}`, '-i', file, '-vn', '-af', 'pan=mono|c0=c0', '-ar', '48000',
    '-f', 'f32le', '-',
  ], 'buffer');
  const out = new Float32Array(stdout.length / 4);
  for (let i = 0; i < out.length; i += 1) out[i] = stdout.readFloatLE(i * 4);
  return out;
}

// The amplitude of `freq` in `samples` (a single-bin DFT, Goertzel's).
function toneLevel(samples, freq, rate = 48000) {
  const w = (2 * Math.PI * freq) / rate;
  const c = 2 * Math.cos(w);
  let s1 = 0;
  let s2 = 0;
  for (const x of samples) {
    const s = x + c * s1 - s2;
    s2 = s1;
    s1 = s;
  }
  const power = s1 * s1 + s2 * s2 - c * s1 * s2;
  return (2 * Math.sqrt(Math.max(power, 0))) / samples.length;
}

// Each tone of `freqs` ({name: Hz}) in `samples`, judged in 250 ms windows: its median level
// (a window a loaded machine left silent or half-filled does not decide) and its maximum (a
// tone that is not there is in no window). Throws if `samples` holds fewer than `least`
// windows.
function windowLevels(samples, freqs, least = 7, rate = 48000) {
  const w = rate / 4;
  const wins = [];
  for (let i = 0; i + w <= samples.length; i += w) wins.push(samples.subarray(i, i + w));
  if (wins.length < least) throw new Error(`${samples.length} samples: fewer than ${least} windows of ${w}`);
  return Object.fromEntries(Object.entries(freqs).map(([name, f]) => {
    const l = wins.map((x) => toneLevel(x, f, rate)).sort((a, b) => a - b);
    return [name, { median: Number(l[l.length >> 1].toFixed(3)), max: Number(l[l.length - 1].toFixed(3)) }];
  }));
}

module.exports = { run, toneClip, frameSize, lastFrame, colourAt, lastAudio, toneLevel, windowLevels };
