// Loaded into NNI's manager (a Node.js process) with NODE_OPTIONS=--require, by supernet.core.nni_compat:
// NNI 3.0's REST server calls app.listen(port) with no host, so it listens on every interface with an
// unauthenticated API. A listen() given a port and no host binds to $HEADNAS_NNI_HOST instead.
'use strict';
const net = require('net');
const host = process.env.HEADNAS_NNI_HOST || '127.0.0.1';
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === 'number' && (args.length === 1 || typeof args[1] === 'function')) {
    args.splice(1, 0, host);
  }
  return listen.apply(this, args);
};
