'use strict';
// Media fixtures for the PlayerEndpoint / RecorderEndpoint tests (no test of its own).
//   makeClip(file, {seconds, size, codecs})  -> clip made with ffmpeg (codecs 'vp8' | 'h264' | 'h264frag')
//   probe(file)                              -> {duration, streams: ['video:vp8', 'audio:opus']}
//   videoFrameTimes(file)                    -> sorted presentation times (s) of the video frames
//   serveDir(dir, {bytesPerSecond})          -> HTTP server on 127.0.0.1:0 {base, requests, close()}
//   fileUri(path)                            -> file:///... (percent-encoded)
//   eventLog(obj, types)                     -> records events; {events, of(type), wait(type, ms, pred)}
//   recordThrough(pipeline, filter, clip, file, during) -> clip played through filter into a WebM
//                                               recording (during(): once media reaches it)
//   rgbFrames(file, w, h)                    -> the decoded video frames (RGB24, w x h), in order

const { execFile, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const { waitFor, sleep } = require('./helpers');

function run(cmd, args) {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { maxBuffer: 16 << 20 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${cmd} ${args.join(' ')}: ${(stderr || error.message).trim()}`));
      else resolve(stdout);
    });
  });
}

const CODECS = {
  vp8: ['-c:v', 'libvpx', '-b:v', '600k', '-deadline', 'realtime', '-cpu-used', '8', '-g', '30',
    '-c:a', 'libopus', '-b:a', '48k', '-f', 'webm'],
  h264: ['-c:v', 'libx264', '-preset', 'veryfast', '-pix_fmt', 'yuv420p', '-g', '30',
    '-c:a', 'aac', '-b:a', '64k', '-movflags', '+faststart', '-f', 'mp4'],
  // Fragmented MP4 (moov first, a fragment per keyframe): demuxable as it arrives.
  h264frag: ['-c:v', 'libx264', '-preset', 'veryfast', '-pix_fmt', 'yuv420p', '-g', '30',
    '-c:a', 'aac', '-b:a', '64k', '-movflags', 'frag_keyframe+empty_moov+default_base_moof', '-f', 'mp4'],
};

async function makeClip(file, { seconds = 2, size = '320x240', codecs = 'vp8' } = {}) {
  await run('ffmpeg', [
    '-hide_banner', '-loglevel', 'error', '-nostdin', '-y',
    '-f', 'lavfi', '-i', `testsrc=size=${size}:rate=30`,
    '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000',
    '-t', String(seconds), ...CODECS[codecs], file,
  ]);
  return file;
}

async function probe(file) {
  const out = await run('ffprobe', [
    '-v', 'error', '-show_entries', 'stream=codec_type,codec_name:format=duration', '-of', 'json', file,
  ]);
  const j = JSON.parse(out);
  return {
    duration: Number(j.format && j.format.duration),
    streams: (j.streams || []).map((s) => `${s.codec_type}:${s.codec_name}`).sort(),
  };
}

// Presentation times (s) of the video frames of `file`, in order.
async function videoFrameTimes(file) {
  const out = await run('ffprobe', ['-v', 'error', '-select_streams', 'v', '-show_entries', 'packet=pts_time', '-of', 'csv=p=0', file]);
  return out.split('\n').filter((l) => l.trim() !== '').map(Number).sort((a, b) => a - b);
}

// Static files of `dir` (no ranges); `bytesPerSecond` throttles the body. Every request is
// recorded with whether its response was complete or cut by the client.
async function serveDir(dir, { bytesPerSecond = 0 } = {}) {
  const requests = [];
  const server = http.createServer((req, res) => {
    const r = { url: req.url, method: req.method, done: false, aborted: false, bytes: 0 };
    requests.push(r);
    const file = path.join(dir, path.basename(decodeURIComponent(new URL(req.url, 'http://x').pathname)));
    let data;
    try {
      data = fs.readFileSync(file);
    } catch (_) {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('not found');
      r.done = true;
      return;
    }
    res.writeHead(200, { 'Content-Type': 'video/webm', 'Content-Length': data.length });
    res.on('close', () => {
      if (!r.done) r.aborted = true;
    });
    if (!bytesPerSecond) {
      res.end(data, () => {
        r.bytes = data.length;
        r.done = true;
      });
      return;
    }
    const chunk = Math.max(1, Math.round(bytesPerSecond / 10));
    const timer = setInterval(() => {
      if (res.destroyed) return clearInterval(timer);
      const part = data.subarray(r.bytes, r.bytes + chunk);
      r.bytes += part.length;
      if (r.bytes >= data.length) {
        clearInterval(timer);
        res.end(part, () => {
          r.done = true;
        });
      } else {
        res.write(part);
      }
    }, 100);
    res.on('close', () => clearInterval(timer));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    base: `http://127.0.0.1:${server.address().port}`,
    requests,
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

function fileUri(p) {
  return `file://${p.split('/').map(encodeURIComponent).join('/')}`;
}

// Subscribes to `types` of a kurento-client object; the subscriptions are in place once
// the returned promise resolves (a request after them is answered after they are).
async function eventLog(obj, types) {
  const events = [];
  for (const type of types) obj.on(type, (data) => events.push({ type, data, at: Date.now() }));
  await obj.getName();
  return {
    events,
    of: (type) => events.filter((e) => e.type === type),
    // Types of the events so far, with UriEndpointStateChanged written as its state.
    sequence: () => events.map((e) => (e.type === 'UriEndpointStateChanged' ? `state:${e.data.state}` : e.type)),
    wait: (type, ms, pred = () => true) =>
      waitFor(() => events.find((e) => e.type === type && pred(e.data)), ms, `${type} on ${obj.id}`),
  };
}

// Plays `clip` (a file) through `filter` into a recording at `file` (WebM, video only);
// `during` runs once media flows into the recorder. Resolves when the recording is closed.
async function recordThrough(pipeline, filter, clip, file, during = async () => {}) {
  const p = await pipeline.create('PlayerEndpoint', { uri: fileUri(clip) });
  const r = await pipeline.create('RecorderEndpoint', { uri: fileUri(file), mediaProfile: 'WEBM_VIDEO_ONLY' });
  const log = await eventLog(p, ['EndOfStream']);
  await p.connect(filter);
  await filter.connect(r);
  await r.record();
  await p.play();
  await waitFor(async () => (await r.isMediaFlowingIn('VIDEO')) || null, 10000, 'video into the recorder');
  await during();
  await log.wait('EndOfStream', 20000);
  // What the filter still holds reaches the recorder.
  await sleep(1000);
  await r.stopAndWait();
  for (const o of [p, r]) await o.release();
}

// The decoded frames of `file` (RGB24, scaled to w x h), in order.
function rgbFrames(file, w, h) {
  const out = execFileSync('ffmpeg', ['-loglevel', 'error', '-i', file, '-an', '-vf', `scale=${w}:${h}`,
    '-fps_mode', 'passthrough', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-'], { maxBuffer: 256 << 20 });
  const size = w * h * 3;
  const list = [];
  for (let f = 0; f + size <= out.length; f += size) list.push(out.subarray(f, f + size));
  return list;
}

module.exports = { makeClip, probe, videoFrameTimes, serveDir, fileUri, eventLog, recordThrough, rgbFrames };
