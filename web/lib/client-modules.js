'use strict';
// Kurento client modules (kurento-module-*) that only some media servers have.
//
// kurento.register(module) is global to the process and, besides the module's classes and
// complex types, adds its name to the modules kurento-client requires of EVERY media server
// it connects to from then on (the `strict` check of getInfo when a client connects): after
// one chroma-key session, the web app's next client (a reconnection, another media server)
// would be refused by a media server without the chroma module, and every page with it.
// useModule registers a module's types without that requirement, once the media server the
// client is connected to has been seen to list the module.
//
//   await useModule(client, require('kurento-module-chroma'))
//     resolves once the module's classes and complex types are registered; rejects, naming
//     the module, when the client's media server does not list it in getInfo.

const kurento = require('kurento-client');

const registered = new Set(); // names of the modules whose types are registered

// The names of the modules the client's media server lists (asked each time: a client may
// reconnect to another media server).
async function serverModules(client) {
  const manager = await client.getServerManager();
  const info = await manager.getInfo();
  return info.modules.map((m) => m.name);
}

async function useModule(client, module) {
  const names = await serverModules(client);
  if (!names.includes(module.name)) {
    throw new Error(`The media server has no ${module.name} module (it lists ${names.join(', ')})`);
  }
  if (registered.has(module.name)) return;
  const required = kurento.register.modules;
  const before = required.slice();
  kurento.register(module);
  // The types stay; the list of modules required of every media server is as it was.
  required.splice(0, required.length, ...before);
  registered.add(module.name);
}

module.exports = { useModule };
