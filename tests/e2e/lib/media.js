'use strict';
// Media fixtures for the recorder and player scenarios.
//   makeClip(file, {seconds, size, codecs})  -> clip made with ffmpeg ('vp8': WebM VP8 + Opus,
//                                              'h264': MP4 H.264 + AAC); a moving test pattern
//   probe(file)                              -> {duration, streams: ['audio:opus', 'video:vp8']}
//   serveDir(dir)                            -> HTTP server on 127.0.0.1:0 {base, requests, close()}
//   fileUri(path), pathOfFileUri(uri)

const { execFile } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');

function run(cmd, args) {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { maxBuffer: 16 << 20 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${cmd} ${args.join(' ')}: ${(stderr || error.message).trim()}`));
      else resolve(stdout);
    });
  });
}

const CODECS = {
  vp8: ['-c:v', 'libvpx', '-b:v', '1M', '-deadline', 'realtime', '-cpu-used', '8', '-g', '30',
    '-c:a', 'libopus', '-b:a', '64k', '-f', 'webm'],
  h264: ['-c:v', 'libx264', '-preset', 'veryfast', '-pix_fmt', 'yuv420p', '-g', '30',
    '-c:a', 'aac', '-b:a', '96k', '-movflags', '+faststart', '-f', 'mp4'],
};

async function makeClip(file, { seconds = 6, size = '480x270', codecs = 'vp8' } = {}) {
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

async function serveDir(dir) {
  const requests = [];
  const server = http.createServer((req, res) => {
    const name = path.basename(decodeURIComponent(new URL(req.url, 'http://x').pathname));
    requests.push({ url: req.url, method: req.method });
    fs.readFile(path.join(dir, name), (err, data) => {
      if (err) {
        res.writeHead(404, { 'Content-Type': 'text/plain' });
        res.end('not found');
        return;
      }
      res.writeHead(200, { 'Content-Type': name.endsWith('.mp4') ? 'video/mp4' : 'video/webm', 'Content-Length': data.length });
      res.end(data);
    });
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

function pathOfFileUri(uri) {
  return decodeURIComponent(new URL(uri).pathname);
}

module.exports = { makeClip, probe, serveDir, fileUri, pathOfFileUri };
