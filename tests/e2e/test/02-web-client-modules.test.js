'use strict';
// The demo web app's client modules (web/lib/client-modules.js), without a browser: the
// chroma-key page registers kurento-module-chroma's types in the web app's process, and
// kurento-client requires every module registered with kurento.register of each media
// server it connects to afterwards. After a chroma-key session, a client of the web app
// (a reconnection, another media server) connecting to a media server without the chroma
// module must still connect, and every other page with it. The media server without the
// module is Fluo behind a WebSocket proxy that leaves chroma out of getInfo's modules.
//   - useModule(client, chroma) with Fluo: ChromaFilter and its WindowParam work;
//   - a new client through the proxy connects (plain kurento.register: refused, "Module
//     'chroma' is not installed"), makes a WebRtcEndpoint, and useModule refuses chroma
//     there, naming it.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const WebSocket = require('ws');
const { ROOT, startFluo, tmpDir, removeTmpDir, log } = require('../lib/env');

const kurento = require(path.join(ROOT, 'web/node_modules/kurento-client'));
const chroma = require(path.join(ROOT, 'web/node_modules/kurento-module-chroma'));
const { useModule } = require(path.join(ROOT, 'web/lib/client-modules'));

// A WebSocket proxy to `target` whose getInfo answers list every module but `hidden`.
function hidingProxy(target, hidden) {
  return new Promise((resolve) => {
    const wss = new WebSocket.Server({ host: '127.0.0.1', port: 0 }, () => {
      resolve({ url: `ws://127.0.0.1:${wss.address().port}/kurento`, close: () => wss.close() });
    });
    wss.on('connection', (front) => {
      const back = new WebSocket(target);
      const early = [];
      const infoIds = new Set();
      front.on('message', (data) => {
        const m = JSON.parse(data);
        if (m.method === 'invoke' && m.params && m.params.operation === 'getInfo') infoIds.add(m.id);
        if (back.readyState === WebSocket.OPEN) back.send(JSON.stringify(m));
        else early.push(JSON.stringify(m));
      });
      back.on('open', () => early.splice(0).forEach((m) => back.send(m)));
      back.on('message', (data) => {
        const m = JSON.parse(data);
        if (infoIds.has(m.id) && m.result && m.result.value) {
          m.result.value.modules = m.result.value.modules.filter((x) => x.name !== hidden);
        }
        if (front.readyState === WebSocket.OPEN) front.send(JSON.stringify(m));
      });
      const end = () => {
        front.close();
        back.close();
      };
      front.on('close', end);
      back.on('close', end);
      back.on('error', end);
    });
  });
}

function connect(url) {
  return new Promise((resolve, reject) => {
    const client = kurento(url, { failAfter: 1 }, (error) => {
      if (error) {
        client.close();
        reject(error);
      } else resolve(client);
    });
  });
}

let dir;
let fluo;
let proxy;
const clients = [];
before(async () => {
  dir = tmpDir('fluo-e2e-modules-');
  fluo = await startFluo(dir);
  proxy = await hidingProxy(fluo.url, 'chroma');
});
after(async () => {
  for (const c of clients) c.close();
  if (proxy) proxy.close();
  if (fluo) await fluo.stop();
  removeTmpDir(dir);
});

test('a client module used with one media server is not required of another without it', { timeout: 60000 }, async () => {
  const withChroma = await connect(fluo.url);
  clients.push(withChroma);
  await useModule(withChroma, chroma);
  const pipeline = await withChroma.create('MediaPipeline');
  const { WindowParam } = chroma.complexTypes;
  const filter = await pipeline.create('ChromaFilter', {
    window: WindowParam({ topRightCornerX: 0, topRightCornerY: 0, width: 10, height: 10 }),
  });
  assert.equal(filter.constructor, chroma.ChromaFilter);
  await pipeline.release();

  // A media server without chroma: the client connects, the other pages' elements work.
  const without = await connect(proxy.url);
  clients.push(without);
  const info = await (await without.getServerManager()).getInfo();
  assert.ok(!info.modules.some((m) => m.name === 'chroma'), 'the proxy hides chroma');
  const p2 = await without.create('MediaPipeline');
  await p2.create('WebRtcEndpoint');
  await p2.release();
  await assert.rejects(useModule(without, chroma), /The media server has no chroma module/);
  // And the first client still has it.
  await useModule(withChroma, chroma);
  log('client modules: chroma used with Fluo; a client of a server without it connects');
});
