'use strict';
// A kurento-client module for Kurento's `opencvexample` (there is no
// kurento-module-opencvexample on npm), made the way kurento-client's modules are: a class
// that inherits kurento-client's OpenCVFilter (kurento.OpenCVFilter, from
// kurento-client-filters), its methods sent through `_invoke`, its constructor parameters
// for the client's checks, and the module's name and version for kurentoClient.register
// (which makes the client ask the server's getInfo for the module at connect). Methods
// called without a callback only log a server error, as every generated method of
// kurento-client 7.3.0 does.
const { inherits } = require('node:util');
const kurentoClient = require('kurento-client');

const { disguise } = kurentoClient;
const { Transaction } = kurentoClient.TransactionsManager;
const { ChecktypeError } = kurentoClient.checkType;
const OpenCVFilter = kurentoClient.register.abstracts['kurento.OpenCVFilter'];

function noop(error, result) {
  if (error) console.trace(error);
  return result;
}

function OpenCVExample() {
  OpenCVExample.super_.call(this);
}
inherits(OpenCVExample, OpenCVFilter);

// setFilterType(filterType: int), setEdgeThreshold(edgeValue: int): void.
for (const [method, param] of [['setFilterType', 'filterType'], ['setEdgeThreshold', 'edgeValue']]) {
  OpenCVExample.prototype[method] = function (...args) {
    const transaction = args[0] instanceof Transaction ? args.shift() : undefined;
    const [value, callback] = args;
    return disguise(this._invoke(transaction, method, { [param]: value }, (callback || noop).bind(this)), this);
  };
}

OpenCVExample.constructorParams = {
  mediaPipeline: { type: 'kurento.MediaPipeline', required: true },
};
OpenCVExample.events = OpenCVFilter.events;
OpenCVExample.check = (key, value) => {
  if (!(value instanceof OpenCVExample)) throw ChecktypeError(key, OpenCVExample, value);
};

module.exports = { name: 'opencvexample', version: '7.3.0', OpenCVExample };
