'use strict';
// Fluo demo web app: static pages + a browser signalling WebSocket (/ws), and the
// official kurento-client 7.3.0 talking to Fluo (or any Kurento Media Server 7).
//
//   node server.js [--port 8443] [--bind 0.0.0.0] [--ws-uri ws://127.0.0.1:8888/kurento]
//                  [--access-token TOKEN] [--player-any-uri]
//                  [--http] [--port-file PATH]
//                  [--recordings-dir /tmp/fluo-recordings]
//                  [--media-dir web/media] [--media-port 0] [--media-bind 127.0.0.1]
//                  [--ops-uri http://127.0.0.1:9100]
//
// Environment: FLUO_WS_URI (like --ws-uri), FLUO_AUTH_TOKEN (like --access-token: the token
// the media server was started with, sent by kurento-client as access_token), WEB_PORT,
// WEB_BIND, FLUO_OPS_URI (like --ops-uri: Fluo's operations listener, whose
// /admin/pipelines the pipeline view page reads through this app). Flags win.
//
// Ten applications share the signalling socket; every message is JSON with an `id`:
//   hello-world : one WebRtcEndpoint connected to itself (loopback)
//   one2many    : one presenter, many viewers (presenter endpoint -> each viewer endpoint)
//   one2one     : two registered users, two endpoints connected both ways
//   recorder    : loopback + RecorderEndpoint (WebM file), then PlayerEndpoint of that file
//   player      : PlayerEndpoint of a sample clip -> WebRtcEndpoint, with pause and seek
//                 (any URI the browser sends only with --player-any-uri: the media server
//                 opens it, files and internal hosts included)
//   magic-mirror: one WebRtcEndpoint -> FaceOverlayFilter (a hat on every face) -> back to
//                 itself; the hat (hat.png) is made with ffmpeg and fetched by the media
//                 server from the plain-HTTP listener
//   chroma-key  : one WebRtcEndpoint -> ChromaFilter (the colour of a calibration window
//                 replaced by a background image, chroma-background.png, made and served as
//                 the hat) -> back to itself; needs the chroma module in the media server
//                 (Fluo has it built in; kurento-module-chroma's types are registered when
//                 the media server lists it, without requiring it of every media server)
//   qr-reader   : one WebRtcEndpoint -> ZBarFilter -> back to itself; its CodeFound events
//                 go to the page
//   group-call     : rooms in SFU or MCU (Composite) mode     (apps/group-call.js)
//   speaker-switch : rooms with a DispatcherOneToMany          (apps/speaker-switch.js)
//
// Sample clips for the player (sample.webm: VP8 + Opus, sample.mp4: H.264 + AAC) are made with
// ffmpeg in the media dir the first time they are asked for, and served at /media/<name>, both
// here and on a plain-HTTP listener (--media-bind/--media-port): the media server fetches
// http(s) URIs itself and need not trust this app's self-signed certificate.

const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const path = require('node:path');
const { execFile, execFileSync } = require('node:child_process');
const WebSocket = require('ws');
const kurento = require('kurento-client');
const { createGroupCall } = require('./apps/group-call');
const { createSpeakerSwitch } = require('./apps/speaker-switch');
const { useModule } = require('./lib/client-modules');

// ---------------------------------------------------------------------------
// Options

function parseArgs(argv) {
  const opts = {
    port: process.env.WEB_PORT !== undefined ? Number(process.env.WEB_PORT) : 8443,
    bind: process.env.WEB_BIND || '0.0.0.0',
    wsUri: process.env.FLUO_WS_URI || 'ws://127.0.0.1:8888/kurento',
    http: false,
    portFile: null,
    recordingsDir: '/tmp/fluo-recordings',
    mediaDir: path.join(__dirname, 'media'),
    mediaPort: 0,
    mediaBind: '127.0.0.1',
    accessToken: process.env.FLUO_AUTH_TOKEN || null,
    playerAnyUri: false,
    opsUri: process.env.FLUO_OPS_URI || null,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const eq = arg.indexOf('=');
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    const value = () => {
      if (eq > 0) return arg.slice(eq + 1);
      if (i + 1 >= argv.length) usage(`missing value for ${name}`);
      return argv[++i];
    };
    switch (name) {
      case '--port':
        opts.port = Number(value());
        break;
      case '--bind':
        opts.bind = value();
        break;
      case '--ws-uri':
        opts.wsUri = value();
        break;
      case '--http':
        opts.http = true;
        break;
      case '--access-token':
        opts.accessToken = value() || null;
        break;
      case '--player-any-uri':
        opts.playerAnyUri = true;
        break;
      case '--port-file':
        opts.portFile = value();
        break;
      case '--recordings-dir':
        opts.recordingsDir = path.resolve(value());
        break;
      case '--media-dir':
        opts.mediaDir = path.resolve(value());
        break;
      case '--media-port':
        opts.mediaPort = Number(value());
        break;
      case '--media-bind':
        opts.mediaBind = value();
        break;
      case '--ops-uri':
        opts.opsUri = value() || null;
        break;
      case '-h':
      case '--help':
        usage();
        break;
      default:
        usage(`unknown option ${arg}`);
    }
  }
  for (const port of [opts.port, opts.mediaPort]) {
    if (!Number.isInteger(port) || port < 0 || port > 65535) usage(`invalid port ${port}`);
  }
  return opts;
}

function usage(problem) {
  const text =
    'usage: node server.js [--port N (8443, 0 = any)] [--bind ADDR (0.0.0.0)]\n' +
    '                      [--ws-uri URI (env FLUO_WS_URI, ws://127.0.0.1:8888/kurento)]\n' +
    '                      [--access-token TOKEN (env FLUO_AUTH_TOKEN: the media server\'s token)]\n' +
    '                      [--player-any-uri (the player page plays any URI, not only the samples)]\n' +
    '                      [--http (plain HTTP instead of HTTPS)] [--port-file PATH]\n' +
    '                      [--recordings-dir DIR (/tmp/fluo-recordings, on the media server)]\n' +
    '                      [--media-dir DIR (web/media: sample clips)]\n' +
    '                      [--media-port N (0 = any)] [--media-bind ADDR (127.0.0.1)]\n' +
    '                      [--ops-uri URL (env FLUO_OPS_URI: Fluo\'s --metrics-port listener, for pipelines.html)]\n';
  if (problem) {
    process.stderr.write(`server.js: ${problem}\n${text}`);
    process.exit(2);
  }
  process.stdout.write(text);
  process.exit(0);
}

const opts = parseArgs(process.argv.slice(2));
const PUBLIC_DIR = path.join(__dirname, 'public');
const CERT_DIR = path.join(__dirname, '.cert');

function log(...args) {
  console.log(new Date().toISOString(), ...args);
}

// ---------------------------------------------------------------------------
// TLS: self-signed certificate made once with the openssl CLI

function loadOrCreateCertificate() {
  const keyFile = path.join(CERT_DIR, 'key.pem');
  const certFile = path.join(CERT_DIR, 'cert.pem');
  if (!fs.existsSync(keyFile) || !fs.existsSync(certFile)) {
    fs.mkdirSync(CERT_DIR, { recursive: true, mode: 0o700 });
    log(`generating a self-signed certificate in ${CERT_DIR}`);
    execFileSync(
      'openssl',
      [
        'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-days', '3650',
        '-subj', '/CN=fluo-demo',
        '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
        '-keyout', keyFile, '-out', certFile,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    fs.chmodSync(keyFile, 0o600);
  }
  return { key: fs.readFileSync(keyFile), cert: fs.readFileSync(certFile) };
}

// ---------------------------------------------------------------------------
// Static files

const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.ico': 'image/x-icon',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
};

function serveStatic(req, res) {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { Allow: 'GET, HEAD' });
    res.end();
    return;
  }
  let pathname;
  try {
    pathname = decodeURIComponent(new URL(req.url, 'http://x').pathname);
  } catch (_) {
    res.writeHead(400);
    res.end('bad request');
    return;
  }
  if (pathname.startsWith('/media/')) {
    serveMedia(req, res, pathname.slice('/media/'.length));
    return;
  }
  if (pathname === '/admin/pipelines' || pathname.startsWith('/admin/pipelines/')) {
    forwardToOps(req, res);
    return;
  }
  if (pathname.endsWith('/')) pathname += 'index.html';
  const file = path.normalize(path.join(PUBLIC_DIR, pathname));
  if (!file.startsWith(PUBLIC_DIR + path.sep)) {
    res.writeHead(403);
    res.end('forbidden');
    return;
  }
  fs.readFile(file, (err, data) => {
    if (err) {
      res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' });
      res.end('not found');
      return;
    }
    res.writeHead(200, {
      'Content-Type': MIME[path.extname(file)] || 'application/octet-stream',
      'Cache-Control': 'no-store',
    });
    res.end(req.method === 'HEAD' ? undefined : data);
  });
}

// The pipeline view page (pipelines.html) reads Fluo's /admin/pipelines: forwarded as it is,
// the page's token (Authorization) included, to the operations listener (--ops-uri), which
// is usually on the media server's loopback address only.
function forwardToOps(req, res) {
  if (!opts.opsUri) {
    res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' });
    res.end('the pipeline view needs the web app started with --ops-uri (Fluo\'s --metrics-port listener)');
    return;
  }
  // Only the path and query come from the request, put on the listener's own origin: a
  // request line such as `GET //elsewhere.example/admin/pipelines` names another host when
  // read as a URL, and must not take the caller's Authorization there.
  let target;
  try {
    const asked = new URL(req.url, 'http://x');
    const ops = new URL(opts.opsUri);
    target = new URL(ops.origin);
    target.pathname = asked.pathname;
    target.search = asked.search;
    if (target.origin !== ops.origin) throw new Error('another origin');
  } catch (_) {
    res.writeHead(400);
    res.end('bad request');
    return;
  }
  const headers = req.headers.authorization ? { Authorization: req.headers.authorization } : {};
  const client = target.protocol === 'https:' ? https : http;
  const up = client.request(target, { method: 'GET', headers, timeout: 5000 }, (r) => {
    res.writeHead(r.statusCode, { 'Content-Type': r.headers['content-type'] || 'text/plain', 'Cache-Control': 'no-store' });
    r.pipe(res);
  });
  up.on('timeout', () => up.destroy(new Error('no answer within 5 s')));
  up.on('error', (e) => {
    if (res.headersSent) return res.destroy();
    res.writeHead(502, { 'Content-Type': 'text/plain; charset=utf-8' });
    res.end(`the operations listener ${opts.opsUri} did not answer: ${e.message}`);
  });
  up.end();
}

// ---------------------------------------------------------------------------
// Sample clips (player page): made with ffmpeg on first use, served with byte ranges

const SAMPLE_SOURCE = [
  '-f', 'lavfi', '-i', 'testsrc=size=640x360:rate=30',
  '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000',
  '-t', '10',
];
const SAMPLES = [
  {
    name: 'sample.webm',
    label: 'WebM (VP8 + Opus)',
    args: ['-c:v', 'libvpx', '-b:v', '1M', '-deadline', 'realtime', '-cpu-used', '8', '-g', '30',
      '-c:a', 'libopus', '-b:a', '64k', '-f', 'webm'],
  },
  {
    name: 'sample.mp4',
    label: 'MP4 (H.264 + AAC)',
    args: ['-c:v', 'libx264', '-preset', 'veryfast', '-pix_fmt', 'yuv420p', '-g', '30',
      '-c:a', 'aac', '-b:a', '96k', '-movflags', '+faststart', '-f', 'mp4'],
  },
];
const MEDIA_MIME = { '.webm': 'video/webm', '.mp4': 'video/mp4', '.mkv': 'video/x-matroska', '.png': 'image/png' };
const MEDIA_NAME = /^[A-Za-z0-9_-][A-Za-z0-9_.-]*\.(webm|mp4|mkv|png)$/;
// The Magic Mirror's hat: a red top hat (crown and brim) on a transparent 160x160 image,
// its brim three quarters down (the filter puts the image's lower quarter on the face).
const HAT = {
  name: 'hat.png',
  args: ['-f', 'lavfi', '-i', 'color=c=black:s=160x160,format=rgba', '-frames:v', '1',
    '-vf', "geq=r='200':g='30':b='40':a='if(between(Y,104,124)+between(Y,20,104)*between(X,40,120),255,0)'",
    '-pix_fmt', 'rgba'],
};

// The chroma-key page's background: a beach (sky, sea, sand and a sun), 640x480.
const CHROMA_BACKGROUND = {
  name: 'chroma-background.png',
  args: ['-f', 'lavfi', '-i', 'color=c=black:s=640x480', '-frames:v', '1',
    '-vf', "geq=r='if(lt(hypot(X-480,Y-100),50),255,if(lt(Y,260),110,if(lt(Y,330),20,230)))':" +
      "g='if(lt(hypot(X-480,Y-100),50),220,if(lt(Y,260),180,if(lt(Y,330),110,200)))':" +
      "b='if(lt(hypot(X-480,Y-100),50),60,if(lt(Y,260),240,if(lt(Y,330),180,140)))'"],
};

// The images the filter pages give the media server.
const IMAGES = [HAT, CHROMA_BACKGROUND];

let imagesPromise = null; // Promise<void> of the images' generation under way or done
let imagesDone = false; // the images were made (they may have gone since)
let samplesPromise = null; // Promise<void> of the generation under way or done
let samplesError = null;
let mediaServer = null; // plain-HTTP listener for the media server

function runFfmpeg(args) {
  return new Promise((resolve, reject) => {
    execFile('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-nostdin', '-y', ...args], (error, _stdout, stderr) => {
      if (error) reject(new Error(`ffmpeg failed: ${(stderr || error.message).trim()}`));
      else resolve();
    });
  });
}

// Makes the files of `list` (images or sample clips) that the media dir lacks.
async function makeMedia(list) {
  fs.mkdirSync(opts.mediaDir, { recursive: true });
  for (const item of list) {
    const file = path.join(opts.mediaDir, item.name);
    if (fs.existsSync(file)) continue;
    log(`generating ${file} with ffmpeg`);
    const tmp = `${file}.${process.pid}.tmp${path.extname(file)}`;
    try {
      await runFfmpeg([...(SAMPLES.includes(item) ? SAMPLE_SOURCE : []), ...item.args, tmp]);
      fs.renameSync(tmp, file);
    } finally {
      fs.rmSync(tmp, { force: true });
    }
  }
}

// Makes the missing images: once, and again when a made one has gone (an operator cleaned the
// media folder); a failure is retried at the next call, as the sample clips are.
function ensureImages() {
  const missing = IMAGES.some((i) => !fs.existsSync(path.join(opts.mediaDir, i.name)));
  if (imagesDone && missing) {
    imagesDone = false;
    imagesPromise = null;
  }
  if (!imagesPromise) {
    const made = makeMedia(IMAGES).then(() => {
      if (imagesPromise === made) imagesDone = true;
    });
    imagesPromise = made;
    made.catch((error) => {
      if (imagesPromise === made) imagesPromise = null;
      log('images:', error.message);
    });
  }
  return imagesPromise;
}

// Makes the missing images and sample clips (once per process).
function ensureSamples() {
  if (!samplesPromise) {
    samplesPromise = ensureImages().then(() => makeMedia(SAMPLES));
    samplesPromise.catch((error) => {
      samplesError = error.message;
      samplesPromise = null;
      log('sample clips:', samplesError);
    });
  }
  return samplesPromise;
}

function mediaHttpBase() {
  if (!mediaServer || !mediaServer.listening) return null;
  const { port } = mediaServer.address();
  const host = opts.mediaBind === '0.0.0.0' || opts.mediaBind === '::' ? '127.0.0.1' : opts.mediaBind;
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

function fileUri(file) {
  return `file://${file.split('/').map(encodeURIComponent).join('/')}`;
}

// GET /media/list.json: the sample clips and their URIs (http for the media server's own
// fetch, file for a media server on this machine, browser for this page's origin).
function mediaList() {
  const ready = SAMPLES.every((s) => fs.existsSync(path.join(opts.mediaDir, s.name)));
  // After a failure (no ffmpeg?) the error stays until a restart: no retry on every poll.
  if (!ready && !samplesError) ensureSamples().catch(() => {});
  const base = mediaHttpBase();
  const clips = SAMPLES.filter((s) => fs.existsSync(path.join(opts.mediaDir, s.name))).map((s) => ({
    name: s.name,
    label: s.label,
    http: base ? `${base}/media/${s.name}` : null,
    file: fileUri(path.join(opts.mediaDir, s.name)),
    browser: `/media/${s.name}`,
  }));
  return { state: ready ? 'ready' : samplesError ? 'failed' : 'generating', error: samplesError, clips };
}

function serveMedia(req, res, name, afterMaking = false) {
  if (name === 'list.json') {
    res.writeHead(200, { 'Content-Type': 'application/json; charset=utf-8', 'Cache-Control': 'no-store' });
    res.end(req.method === 'HEAD' ? undefined : JSON.stringify(mediaList()));
    return;
  }
  if (!MEDIA_NAME.test(name)) {
    res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' });
    res.end('not found');
    return;
  }
  const file = path.join(opts.mediaDir, name);
  // The generated images are made when first asked for (the chroma-key page shows its
  // background before Start).
  // Once only: if the file is still missing after making, it is a 404 (never a loop).
  if (!afterMaking && IMAGES.some((i) => i.name === name) && !fs.existsSync(file)) {
    ensureImages().then(() => serveMedia(req, res, name, true), () => {
      res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' });
      res.end('not found');
    });
    return;
  }
  fs.stat(file, (err, st) => {
    if (err || !st.isFile()) {
      res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' });
      res.end('not found');
      return;
    }
    const headers = {
      'Content-Type': MEDIA_MIME[path.extname(name)],
      'Accept-Ranges': 'bytes',
      'Cache-Control': 'no-store',
    };
    let start = 0;
    let end = st.size - 1;
    let status = 200;
    const range = /^bytes=(\d*)-(\d*)$/.exec(req.headers.range || '');
    if (range && (range[1] !== '' || range[2] !== '')) {
      if (range[1] === '') {
        start = Math.max(0, st.size - Number(range[2]));
      } else {
        start = Number(range[1]);
        if (range[2] !== '') end = Math.min(end, Number(range[2]));
      }
      if (start > end) {
        res.writeHead(416, { 'Content-Range': `bytes */${st.size}` });
        res.end();
        return;
      }
      status = 206;
      headers['Content-Range'] = `bytes ${start}-${end}/${st.size}`;
    }
    headers['Content-Length'] = end - start + 1;
    res.writeHead(status, headers);
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    const stream = fs.createReadStream(file, { start, end });
    stream.on('error', () => res.destroy());
    res.on('close', () => stream.destroy());
    stream.pipe(res);
  });
}

// The plain-HTTP listener: /media/* only.
function serveMediaOnly(req, res) {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { Allow: 'GET, HEAD' });
    res.end();
    return;
  }
  let pathname;
  try {
    pathname = decodeURIComponent(new URL(req.url, 'http://x').pathname);
  } catch (_) {
    pathname = '';
  }
  if (!pathname.startsWith('/media/')) {
    res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' });
    res.end('not found');
    return;
  }
  serveMedia(req, res, pathname.slice('/media/'.length));
}

// ---------------------------------------------------------------------------
// kurento-client: one shared client per process, re-created after it gives up

let clientPromise = null; // Promise<KurentoClient>, shared by all browser sessions
let activeClient = null;

function getKurentoClient() {
  if (!clientPromise) {
    const attempt = new Promise((resolve, reject) => {
      // failAfter bounds the reconnection attempts, so a missing media server shows up
      // in the browser as an error instead of a page waiting forever.
      const options = { failAfter: 5 };
      // kurento-client sends it as ?access_token= at the WebSocket upgrade.
      if (opts.accessToken) options.access_token = opts.accessToken;
      const client = kurento(opts.wsUri, options, (error) => {
        if (error) {
          if (clientPromise === attempt) clientPromise = null;
          client.close();
          reject(new Error(`Could not find media server at address ${opts.wsUri}: ${errorText(error)}`));
          return;
        }
        activeClient = client;
        resolve(client);
      });
      // kurento-client's reconnecting socket (reconnect-core) emits 'error' on every
      // failed attempt; without a listener Node would end the whole process.
      if (client._re) client._re.on('error', (error) => log('kurento-client: connection error:', errorText(error)));
      client.on('disconnect', () => {
        log('kurento-client: gave up on', opts.wsUri);
        if (clientPromise === attempt) clientPromise = null;
        if (activeClient === client) activeClient = null;
        // Not connected yet: fail now rather than when the first request times out.
        reject(new Error(`Could not find media server at address ${opts.wsUri}`));
      });
      client.on('reconnected', (sameSession) => log('kurento-client: reconnected, same session:', sameSession));
    });
    attempt.catch(() => {});
    clientPromise = attempt;
  }
  return clientPromise;
}

function IceCandidate(candidate) {
  return kurento.getComplexType('IceCandidate')(candidate);
}

function errorText(error) {
  if (!error) return 'unknown error';
  if (typeof error === 'string') return error;
  const code = error.code !== undefined ? ` (code ${error.code})` : '';
  return `${error.message || String(error)}${code}`;
}

function releaseQuietly(object, what) {
  if (!object) return;
  object.release().catch((error) => log(`release ${what} failed:`, errorText(error)));
}

// Calls a remote method and rejects on a server error. (A kurento-client 7.3.0 method called
// without a callback only logs the error and resolves to undefined.)
function invoke(object, method, ...args) {
  return new Promise((resolve, reject) => {
    object[method](...args, (error, result) => (error ? reject(error) : resolve(result)));
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Resolves once the endpoint's media is up (MediaStateChanged -> CONNECTED), or after `ms`.
// Subscribe before processOffer so the event cannot be missed.
function whenConnected(endpoint, ms) {
  return new Promise((resolve) => {
    let timer = null;
    const onState = (event) => {
      if (event.newState === 'CONNECTED') finish(true);
    };
    function finish(connected) {
      clearTimeout(timer);
      endpoint.removeListener('MediaStateChanged', onState);
      resolve(connected);
    }
    timer = setTimeout(() => finish(false), ms);
    endpoint.on('MediaStateChanged', onState);
  });
}

// ---------------------------------------------------------------------------
// Browser sessions

let nextSessionId = 1;
const sessions = new Map(); // id -> Session

class Session {
  constructor(ws) {
    this.id = nextSessionId++;
    this.ws = ws;
    this.app = null; // 'hello-world' | 'magic-mirror' | 'chroma-key' | 'qr-reader' | 'one2many' | 'one2one' | 'recorder' | 'player' | 'group-call' | 'speaker-switch'
    this.pipeline = null; // pipeline owned by this session (hello-world, presenter)
    this.webRtcEndpoint = null;
    this.candidatesQueue = []; // browser candidates received before the endpoint exists
    this.generation = 0; // bumped by stop(); async work of an older start is discarded
    this.name = null; // one2one
    this.recorder = null; // recorder: the RecorderEndpoint while recording
    this.recordingUri = null; // recorder: file being recorded
    this.lastRecordingUri = null; // recorder: last finished recording, for Play
    this.player = null; // recorder (playback), player: the PlayerEndpoint
  }

  send(message) {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  sendError(message) {
    log(`session ${this.id}: error: ${message}`);
    this.send({ id: 'error', message });
  }

  // A browser candidate: straight to the endpoint once it exists (even before
  // processOffer, as the Kurento tutorials do), queued until then.
  onBrowserCandidate(candidate) {
    const c = IceCandidate(candidate);
    if (this.webRtcEndpoint) {
      this.webRtcEndpoint.addIceCandidate(c).catch((error) =>
        this.sendError(`addIceCandidate failed: ${errorText(error)}`));
    } else {
      this.candidatesQueue.push(c);
    }
  }

  // Attach an endpoint to this session: forward its candidates to the browser and
  // flush the browser candidates queued so far.
  async adoptEndpoint(endpoint) {
    this.webRtcEndpoint = endpoint;
    endpoint.on('IceCandidateFound', (event) => {
      this.send({ id: 'iceCandidate', candidate: event.candidate });
    });
    const queued = this.candidatesQueue.splice(0);
    for (const c of queued) await endpoint.addIceCandidate(c);
  }

  // Drop media of this session. Owners release their pipeline (cascade), others
  // their endpoint.
  stop() {
    this.generation++;
    if (this.pipeline) releaseQuietly(this.pipeline, 'pipeline');
    else if (this.webRtcEndpoint) releaseQuietly(this.webRtcEndpoint, 'endpoint');
    this.pipeline = null;
    this.webRtcEndpoint = null;
    this.candidatesQueue = [];
    this.recorder = null;
    this.player = null;
  }
}

// Run `work` for a start request; results of a start that was stopped meanwhile are
// released instead of being used.
function isCurrent(session, generation) {
  return session.generation === generation && sessions.has(session.id);
}

// ---------------------------------------------------------------------------
// hello-world: loopback

async function helloWorldStart(session, sdpOffer) {
  session.stop();
  const generation = session.generation;
  session.app = 'hello-world';
  session.send({ id: 'status', message: 'connecting to media server' });
  const client = await getKurentoClient();
  const pipeline = await client.create('MediaPipeline');
  if (!isCurrent(session, generation)) return releaseQuietly(pipeline, 'pipeline');
  session.pipeline = pipeline;
  session.send({ id: 'status', message: 'creating WebRtcEndpoint' });
  const endpoint = await pipeline.create('WebRtcEndpoint');
  if (!isCurrent(session, generation)) return;
  await session.adoptEndpoint(endpoint);
  await endpoint.connect(endpoint);
  const sdpAnswer = await endpoint.processOffer(sdpOffer);
  if (!isCurrent(session, generation)) return;
  session.send({ id: 'startResponse', sdpAnswer });
  await endpoint.gatherCandidates();
}

// ---------------------------------------------------------------------------
// Filter loopbacks: the camera through a filter and back to the same endpoint
// (magic-mirror, chroma-key, qr-reader)

// `prepare(client)` does what the filter needs first (an image made, a client module): a Stop
// meanwhile ends the start there, nothing created; `makeFilter(pipeline, prepared)` makes the
// filter.
async function filterLoopbackStart(session, sdpOffer, app, label, { prepare = null, makeFilter }) {
  session.stop();
  const generation = session.generation;
  session.app = app;
  session.send({ id: 'status', message: 'connecting to media server' });
  const client = await getKurentoClient();
  let prepared = null;
  if (prepare) {
    session.send({ id: 'status', message: `preparing the ${label}` });
    try {
      prepared = await prepare(client);
    } catch (error) {
      if (!isCurrent(session, generation)) return; // stopped meanwhile: nobody to tell
      throw error;
    }
  }
  if (!isCurrent(session, generation)) return;
  const pipeline = await client.create('MediaPipeline');
  if (!isCurrent(session, generation)) return releaseQuietly(pipeline, 'pipeline');
  session.pipeline = pipeline;
  session.send({ id: 'status', message: `creating WebRtcEndpoint and ${label}` });
  const endpoint = await pipeline.create('WebRtcEndpoint');
  if (!isCurrent(session, generation)) return;
  await session.adoptEndpoint(endpoint);
  const filter = await makeFilter(pipeline, prepared);
  if (!isCurrent(session, generation)) return;
  await endpoint.connect(filter);
  await filter.connect(endpoint);
  const sdpAnswer = await endpoint.processOffer(sdpOffer);
  if (!isCurrent(session, generation)) return;
  session.send({ id: 'startResponse', sdpAnswer });
  await endpoint.gatherCandidates();
}

// The URL at which the media server fetches one of the generated images.
async function mediaImageUrl(image) {
  await ensureImages();
  const base = mediaHttpBase();
  if (!base) throw new Error(`the media listener is not up: the media server cannot fetch ${image.name}`);
  return `${base}/media/${image.name}`;
}

// magic-mirror: a hat on every face (FaceOverlayFilter), as Kurento's tutorial.
async function magicMirrorStart(session, sdpOffer) {
  await filterLoopbackStart(session, sdpOffer, 'magic-mirror', 'FaceOverlayFilter', {
    prepare: () => mediaImageUrl(HAT),
    makeFilter: async (pipeline, hat) => {
      const filter = await pipeline.create('FaceOverlayFilter');
      await filter.setOverlayedImage(hat, -0.35, -1.2, 1.6, 1.6);
      return filter;
    },
  });
}

// chroma-key: the colour in the calibration window (in pixels of the camera's picture)
// replaced by the background image (ChromaFilter, Kurento's chroma module). The client
// module's types are registered once the media server is seen to have the module, without
// making it a requirement of every media server (lib/client-modules.js): the other pages
// go on working with a media server without it.
async function chromaKeyStart(session, sdpOffer, window) {
  const n = (v, min) => (Number.isInteger(v) && v >= min && v <= 4096 ? v : null);
  const win = window || {};
  const [x, y, width, height] = [n(win.x, 0), n(win.y, 0), n(win.width, 1), n(win.height, 1)];
  if ([x, y, width, height].includes(null)) {
    throw new Error('The calibration window needs whole numbers: x and y from 0, width and height from 1, up to 4096');
  }
  const chroma = require('kurento-module-chroma');
  await filterLoopbackStart(session, sdpOffer, 'chroma-key', 'ChromaFilter', {
    prepare: async (client) => {
      await useModule(client, chroma);
      return mediaImageUrl(CHROMA_BACKGROUND);
    },
    makeFilter: async (pipeline, background) => {
      const { WindowParam } = chroma.complexTypes;
      const filter = await pipeline.create('ChromaFilter', {
        window: WindowParam({ topRightCornerX: x, topRightCornerY: y, width, height }),
      });
      await invoke(filter, 'setBackground', background);
      filter.on('Error', (e) => session.sendError(`ChromaFilter: ${e.description}`));
      return filter;
    },
  });
}

// qr-reader: the codes a ZBarFilter reads in the camera's picture, sent to the page.
async function qrReaderStart(session, sdpOffer) {
  await filterLoopbackStart(session, sdpOffer, 'qr-reader', 'ZBarFilter', {
    makeFilter: async (pipeline) => {
      const filter = await pipeline.create('ZBarFilter');
      filter.on('CodeFound', (e) => session.send({ id: 'codeFound', codeType: e.codeType, value: e.value }));
      return filter;
    },
  });
}

// ---------------------------------------------------------------------------
// one2many

let presenter = null; // Session
const viewers = new Set(); // Session

async function presenterStart(session, sdpOffer) {
  if (presenter && presenter !== session) {
    throw new Error('Another user is currently acting as presenter. Try again later.');
  }
  session.stop();
  const generation = session.generation;
  session.app = 'one2many';
  presenter = session;
  session.send({ id: 'status', message: 'connecting to media server' });
  const client = await getKurentoClient();
  const pipeline = await client.create('MediaPipeline');
  if (!isCurrent(session, generation)) return releaseQuietly(pipeline, 'pipeline');
  session.pipeline = pipeline;
  session.send({ id: 'status', message: 'creating WebRtcEndpoint' });
  const endpoint = await pipeline.create('WebRtcEndpoint');
  if (!isCurrent(session, generation)) return;
  await session.adoptEndpoint(endpoint);
  const sdpAnswer = await endpoint.processOffer(sdpOffer);
  if (!isCurrent(session, generation)) return;
  session.send({ id: 'presenterResponse', sdpAnswer });
  await endpoint.gatherCandidates();
}

async function viewerStart(session, sdpOffer) {
  session.stop();
  const generation = session.generation;
  session.app = 'one2many';
  const source = presenter;
  if (!source || !source.webRtcEndpoint) {
    throw new Error('No active presenter. Try again later.');
  }
  viewers.add(session);
  session.send({ id: 'status', message: 'creating WebRtcEndpoint' });
  const endpoint = await source.pipeline.create('WebRtcEndpoint');
  if (!isCurrent(session, generation) || presenter !== source) return releaseQuietly(endpoint, 'endpoint');
  await session.adoptEndpoint(endpoint);
  await source.webRtcEndpoint.connect(endpoint);
  const sdpAnswer = await endpoint.processOffer(sdpOffer);
  if (!isCurrent(session, generation)) return;
  session.send({ id: 'viewerResponse', sdpAnswer });
  await endpoint.gatherCandidates();
}

function one2manyStop(session) {
  if (presenter === session) {
    for (const viewer of viewers) {
      viewer.send({ id: 'stopCommunication' });
      // The viewers' endpoints go with the presenter's pipeline.
      viewer.webRtcEndpoint = null;
      viewer.generation++;
    }
    viewers.clear();
    presenter = null;
  }
  viewers.delete(session);
  session.stop();
}

// ---------------------------------------------------------------------------
// one2one

const usersByName = new Map(); // name -> Session

function one2oneRegister(session, name) {
  name = typeof name === 'string' ? name.trim() : '';
  if (!name) return session.send({ id: 'registerResponse', response: 'rejected', message: 'Empty user name' });
  if (usersByName.has(name) && usersByName.get(name) !== session) {
    return session.send({ id: 'registerResponse', response: 'rejected', message: `User ${name} is already registered` });
  }
  if (session.name) usersByName.delete(session.name);
  session.app = 'one2one';
  session.name = name;
  usersByName.set(name, session);
  session.send({ id: 'registerResponse', response: 'accepted' });
}

function one2oneCall(session, to, sdpOffer) {
  if (!session.name) throw new Error('Register before calling');
  const callee = usersByName.get(to);
  if (!callee || callee === session) {
    return session.send({ id: 'callResponse', response: 'rejected', message: `User ${to} is not registered` });
  }
  session.stop();
  callee.stop();
  session.peer = callee.name;
  session.pendingOffer = sdpOffer;
  callee.peer = session.name;
  callee.send({ id: 'incomingCall', from: session.name });
}

async function one2oneIncomingCallResponse(callee, from, callResponse, sdpOffer) {
  const caller = usersByName.get(from);
  if (!caller || caller.peer !== callee.name || !caller.pendingOffer) {
    throw new Error(`No pending call from ${from}`);
  }
  if (callResponse !== 'accept') {
    caller.send({ id: 'callResponse', response: 'rejected', message: 'user declined' });
    caller.pendingOffer = null;
    caller.peer = callee.peer = null;
    return;
  }
  const callerOffer = caller.pendingOffer;
  caller.pendingOffer = null;
  const gCaller = caller.generation;
  const gCallee = callee.generation;
  const current = () => isCurrent(caller, gCaller) && isCurrent(callee, gCallee);

  const client = await getKurentoClient();
  const pipeline = await client.create('MediaPipeline');
  if (!current()) return releaseQuietly(pipeline, 'pipeline');
  // The caller's session owns the pipeline; the callee's stop releases it too (see stop()).
  caller.pipeline = pipeline;
  callee.sharedPipeline = pipeline;
  const callerEndpoint = await pipeline.create('WebRtcEndpoint');
  const calleeEndpoint = await pipeline.create('WebRtcEndpoint');
  if (!current()) return;
  await caller.adoptEndpoint(callerEndpoint);
  await callee.adoptEndpoint(calleeEndpoint);
  await callerEndpoint.connect(calleeEndpoint);
  await calleeEndpoint.connect(callerEndpoint);

  const calleeAnswer = await calleeEndpoint.processOffer(sdpOffer);
  if (!current()) return;
  callee.send({ id: 'startCommunication', sdpAnswer: calleeAnswer });
  await calleeEndpoint.gatherCandidates();

  const callerAnswer = await callerEndpoint.processOffer(callerOffer);
  if (!current()) return;
  caller.send({ id: 'callResponse', response: 'accepted', sdpAnswer: callerAnswer });
  await callerEndpoint.gatherCandidates();
}

function one2oneStop(session, notifyPeer) {
  const peer = session.peer ? usersByName.get(session.peer) : null;
  const pipeline = session.pipeline || session.sharedPipeline;
  session.pipeline = pipeline;
  session.sharedPipeline = null;
  session.peer = null;
  session.pendingOffer = null;
  session.stop();
  if (peer && peer.peer === session.name) {
    peer.pipeline = null;
    peer.sharedPipeline = null;
    peer.webRtcEndpoint = null;
    peer.peer = null;
    peer.pendingOffer = null;
    peer.stop();
    if (notifyPeer) peer.send({ id: 'stopCommunication' });
  }
}

// ---------------------------------------------------------------------------
// Players (recorder playback and the player page)

// Media path: PlayerEndpoint -> WebRtcEndpoint -> browser (receive only). play() waits
// until the browser's media connection is up, so a short clip is not half over before the
// first frame arrives. Replies `responseId` with the SDP answer, then `playing`, then
// `videoInfo` (once the player knows its duration), `playEnd` on EndOfStream.
async function startPlayback(session, generation, uri, sdpOffer, responseId) {
  session.send({ id: 'status', message: 'connecting to media server' });
  const client = await getKurentoClient();
  const pipeline = await client.create('MediaPipeline');
  if (!isCurrent(session, generation)) return releaseQuietly(pipeline, 'pipeline');
  session.pipeline = pipeline;
  session.send({ id: 'status', message: 'creating PlayerEndpoint and WebRtcEndpoint' });
  const player = await pipeline.create('PlayerEndpoint', { uri });
  const endpoint = await pipeline.create('WebRtcEndpoint');
  if (!isCurrent(session, generation)) return;
  session.player = player;
  player.on('EndOfStream', () => {
    if (isCurrent(session, generation)) session.send({ id: 'playEnd' });
  });
  player.on('Error', (event) => {
    if (!isCurrent(session, generation)) return;
    session.sendError(`Player error: ${event.description} (${event.type}, code ${event.errorCode})`);
    session.stop();
  });
  await session.adoptEndpoint(endpoint);
  await player.connect(endpoint);
  const connected = whenConnected(endpoint, 10000);
  const sdpAnswer = await endpoint.processOffer(sdpOffer);
  if (!isCurrent(session, generation)) return;
  session.send({ id: responseId, sdpAnswer });
  await endpoint.gatherCandidates();
  if (!(await connected)) log(`session ${session.id}: no MediaStateChanged CONNECTED within 10 s; playing anyway`);
  if (!isCurrent(session, generation)) return;
  await invoke(player, 'play');
  if (!isCurrent(session, generation)) return;
  session.send({ id: 'playing' });
  // The duration is known once the file's headers are read.
  let info = null;
  for (let i = 0; i < 20 && isCurrent(session, generation); i++) {
    info = await invoke(player, 'getVideoInfo');
    if (info && (Number(info.duration) > 0 || info.isSeekable)) break;
    await sleep(250);
  }
  if (!isCurrent(session, generation) || !info) return;
  session.send({
    id: 'videoInfo',
    videoInfo: {
      isSeekable: Boolean(info.isSeekable),
      seekableInit: Number(info.seekableInit),
      seekableEnd: Number(info.seekableEnd),
      duration: Number(info.duration),
    },
  });
}

// ---------------------------------------------------------------------------
// recorder: loopback recorded to a WebM file on the media server, then played back

function newRecordingUri(session) {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  return fileUri(path.join(opts.recordingsDir, `${stamp}-${session.id}.webm`));
}

// Size of a file:// recording, when the media server shares this machine's disk.
function recordingBytes(uri) {
  try {
    return fs.statSync(decodeURIComponent(new URL(uri).pathname)).size;
  } catch (_) {
    return null;
  }
}

async function recorderStart(session, sdpOffer) {
  session.stop();
  const generation = session.generation;
  session.app = 'recorder';
  session.send({ id: 'status', message: 'connecting to media server' });
  const client = await getKurentoClient();
  const pipeline = await client.create('MediaPipeline');
  if (!isCurrent(session, generation)) return releaseQuietly(pipeline, 'pipeline');
  session.pipeline = pipeline;
  session.send({ id: 'status', message: 'creating WebRtcEndpoint and RecorderEndpoint' });
  const uri = newRecordingUri(session);
  const endpoint = await pipeline.create('WebRtcEndpoint');
  const recorder = await pipeline.create('RecorderEndpoint', { uri, mediaProfile: 'WEBM' });
  if (!isCurrent(session, generation)) return;
  session.recorder = recorder;
  session.recordingUri = uri;
  recorder.on('Error', (event) => {
    if (!isCurrent(session, generation)) return;
    session.sendError(`Recorder error: ${event.description} (${event.type}, code ${event.errorCode})`);
    session.stop();
  });
  await session.adoptEndpoint(endpoint);
  await endpoint.connect(endpoint);
  await endpoint.connect(recorder);
  const sdpAnswer = await endpoint.processOffer(sdpOffer);
  if (!isCurrent(session, generation)) return;
  session.send({ id: 'recorderStartResponse', sdpAnswer });
  await endpoint.gatherCandidates();
  await invoke(recorder, 'record');
  if (!isCurrent(session, generation)) return;
  session.send({ id: 'recording', uri });
}

// Stop while recording: the file is finished (stopAndWait) before the pipeline goes.
async function recorderStop(session) {
  const { recorder, recordingUri: uri, pipeline } = session;
  if (!recorder) {
    // Stopped before the recorder existed.
    session.stop();
    session.send({ id: 'recorderStopped', uri: null, bytes: null });
    return;
  }
  // Detach everything from the session first: a Start arriving meanwhile begins afresh.
  session.pipeline = null;
  session.webRtcEndpoint = null;
  session.stop();
  session.recordingUri = null;
  session.send({ id: 'status', message: 'finishing the recording' });
  try {
    await invoke(recorder, 'stopAndWait');
  } catch (error) {
    session.sendError(`stopAndWait failed: ${errorText(error)}`);
    return;
  } finally {
    releaseQuietly(pipeline, 'pipeline');
  }
  session.lastRecordingUri = uri;
  session.send({ id: 'recorderStopped', uri, bytes: recordingBytes(uri) });
}

async function recorderPlay(session, sdpOffer) {
  const uri = session.lastRecordingUri;
  if (!uri) throw new Error('Nothing recorded yet: Start and Stop a recording first');
  session.stop();
  session.app = 'recorder';
  await startPlayback(session, session.generation, uri, sdpOffer, 'recorderPlayResponse');
}

// ---------------------------------------------------------------------------
// player: the sample clips (any URI the media server can read with --player-any-uri)

// Whether `uri` is one of the sample clips as this app lists them (file:// or http://).
function isSampleUri(uri) {
  const base = mediaHttpBase();
  return SAMPLES.some((s) => uri === fileUri(path.join(opts.mediaDir, s.name)) || (base && uri === `${base}/media/${s.name}`));
}

async function playerStart(session, sdpOffer, uri) {
  uri = typeof uri === 'string' ? uri.trim() : '';
  if (!uri) throw new Error('Enter the URI of a file or stream to play');
  if (!opts.playerAnyUri && !isSampleUri(uri)) {
    throw new Error(`This demo plays only its sample clips (${SAMPLES.map((s) => s.name).join(', ')}): ` +
      'start the web app with --player-any-uri to play other URIs');
  }
  session.stop();
  session.app = 'player';
  await startPlayback(session, session.generation, uri, sdpOffer, 'playerStartResponse');
}

async function playerControl(session, action, message) {
  const player = session.player;
  if (!player) {
    if (action === 'position') return; // a poll that crossed a stop
    throw new Error('Nothing is playing');
  }
  switch (action) {
    case 'pause':
      await invoke(player, 'pause');
      return session.player === player && session.send({ id: 'paused' });
    case 'resume':
      await invoke(player, 'play');
      return session.player === player && session.send({ id: 'playing' });
    case 'seek': {
      const position = Math.round(Number(message.position));
      if (!Number.isFinite(position) || position < 0) throw new Error(`Bad position ${message.position}`);
      await invoke(player, 'setPosition', position);
      break;
    }
    case 'position':
      break;
    default:
      throw new Error(`Unknown player action ${action}`);
  }
  const position = await invoke(player, 'getPosition');
  if (session.player === player) session.send({ id: 'position', position: Number(position) });
}

// ---------------------------------------------------------------------------
// Rooms: group-call and speaker-switch (web/apps/)

const roomContext = { getKurentoClient, IceCandidate, errorText, releaseQuietly, invoke, log };
const groupCall = createGroupCall(roomContext);
const speakerSwitch = createSpeakerSwitch(roomContext);

// ---------------------------------------------------------------------------
// Signalling socket

function stopSession(session, notifyPeer) {
  if (session.app === 'group-call') groupCall.leave(session);
  else if (session.app === 'speaker-switch') speakerSwitch.leave(session);
  else if (session.app === 'one2many') one2manyStop(session);
  else if (session.app === 'one2one') one2oneStop(session, notifyPeer);
  else if (session.app === 'recorder' && session.recorder) {
    recorderStop(session).catch((error) => session.sendError(errorText(error)));
  } else session.stop();
}

function onMessage(session, message) {
  // A failed start leaves nothing behind: its pipeline/endpoint are released.
  const run = (work, cleanup) =>
    Promise.resolve()
      .then(work)
      .catch((error) => {
        session.sendError(errorText(error));
        if (cleanup) cleanup(error);
      });

  switch (message.id) {
    // hello-world
    case 'start':
      return run(() => helloWorldStart(session, message.sdpOffer), () => session.stop());
    // magic-mirror
    case 'magicMirrorStart':
      return run(() => magicMirrorStart(session, message.sdpOffer), () => session.stop());
    case 'chromaKeyStart':
      return run(() => chromaKeyStart(session, message.sdpOffer, message.window), () => session.stop());
    case 'qrReaderStart':
      return run(() => qrReaderStart(session, message.sdpOffer), () => session.stop());
    // one2many
    case 'presenter':
      return run(() => presenterStart(session, message.sdpOffer), () => one2manyStop(session));
    case 'viewer':
      return run(() => viewerStart(session, message.sdpOffer), () => one2manyStop(session));
    // one2one
    case 'register':
      return one2oneRegister(session, message.name);
    case 'call':
      return run(() => one2oneCall(session, message.to, message.sdpOffer));
    case 'incomingCallResponse':
      return run(
        () => one2oneIncomingCallResponse(session, message.from, message.callResponse, message.sdpOffer),
        (error) => {
          const caller = usersByName.get(message.from);
          if (caller && caller.peer === session.name) caller.sendError(errorText(error));
          one2oneStop(session, true);
        },
      );
    // recorder
    case 'recorderStart':
      return run(() => recorderStart(session, message.sdpOffer), () => session.stop());
    case 'recorderStop':
      return run(() => recorderStop(session));
    case 'recorderPlay':
      return run(() => recorderPlay(session, message.sdpOffer), () => session.stop());
    // player
    case 'playerStart':
      return run(() => playerStart(session, message.sdpOffer, message.uri), () => session.stop());
    case 'playerPause':
      return run(() => playerControl(session, 'pause', message));
    case 'playerResume':
      return run(() => playerControl(session, 'resume', message));
    case 'playerSeek':
      return run(() => playerControl(session, 'seek', message));
    case 'playerGetPosition':
      return run(() => playerControl(session, 'position', message));
    // group-call
    case 'groupJoin':
      return run(() => groupCall.join(session, message), () => groupCall.leave(session));
    case 'groupReceive':
      return run(() => groupCall.receive(session, message));
    case 'groupCandidate':
      return run(() => groupCall.candidate(session, message));
    case 'groupLeave':
      groupCall.leave(session);
      return session.send({ id: 'groupLeft' });
    // speaker-switch
    case 'speakerJoin':
      return run(() => speakerSwitch.join(session, message), () => speakerSwitch.leave(session));
    case 'speakerCandidate':
      return run(() => speakerSwitch.candidate(session, message));
    case 'speakerSetSource':
      return run(() => speakerSwitch.setSource(session, message));
    case 'speakerRemoveSource':
      return run(() => speakerSwitch.removeSource(session));
    case 'speakerLeave':
      speakerSwitch.leave(session);
      return session.send({ id: 'speakerLeft' });
    // all
    case 'onIceCandidate':
      return run(() => session.onBrowserCandidate(message.candidate));
    case 'stop':
      return stopSession(session, true);
    default:
      return session.sendError(`Invalid message ${JSON.stringify(message.id)}`);
  }
}

function onClose(session) {
  stopSession(session, true);
  if (session.name && usersByName.get(session.name) === session) usersByName.delete(session.name);
  sessions.delete(session.id);
}

// ---------------------------------------------------------------------------
// Start

const server = opts.http ? http.createServer(serveStatic) : https.createServer(loadOrCreateCertificate(), serveStatic);
const wss = new WebSocket.Server({ server, path: '/ws' });

wss.on('connection', (ws) => {
  const session = new Session(ws);
  sessions.set(session.id, session);
  log(`session ${session.id}: connected`);
  ws.on('message', (data) => {
    let message;
    try {
      message = JSON.parse(data);
    } catch (_) {
      session.sendError('Invalid JSON message');
      return;
    }
    if (!['onIceCandidate', 'groupCandidate', 'speakerCandidate', 'playerGetPosition'].includes(message.id)) log(`session ${session.id}: <- ${message.id}`);
    onMessage(session, message);
  });
  ws.on('close', () => {
    log(`session ${session.id}: closed`);
    onClose(session);
  });
  ws.on('error', (error) => log(`session ${session.id}: socket error:`, errorText(error)));
});

server.listen(opts.port, opts.bind, () => {
  const { port } = server.address();
  const scheme = opts.http ? 'http' : 'https';
  log(`Fluo demo on ${scheme}://${opts.bind}:${port}/ (media server ${opts.wsUri}` +
    `${opts.accessToken ? ', with an access token' : ''})`);
  if (opts.playerAnyUri) log('--player-any-uri: the player page plays any URI a browser sends (the media server opens it)');
  if (opts.portFile) fs.writeFileSync(opts.portFile, `${port}\n`);
});

// Without it the player page still works with file:// URIs.
mediaServer = http.createServer(serveMediaOnly);
mediaServer.on('error', (error) => log(`media listener on ${opts.mediaBind}:${opts.mediaPort}:`, errorText(error)));
mediaServer.listen(opts.mediaPort, opts.mediaBind, () => {
  log(`sample clips for the media server on ${mediaHttpBase()}/media/ (from ${opts.mediaDir})`);
});

function shutdown() {
  for (const session of sessions.values()) onClose(session);
  wss.close();
  server.close();
  mediaServer.close();
  // Let release() requests reach the media server before leaving.
  const done = () => process.exit(0);
  if (activeClient) {
    setTimeout(() => {
      activeClient.close();
      done();
    }, 300);
  } else {
    done();
  }
}
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
