// Loaded into NNI's manager (a Node.js process) with NODE_OPTIONS=--require, by
// supernet.core.nni_compat.patched_manager. Two narrow fixes of NNI 3.0 (unmaintained since 2023):
'use strict';
const net = require('net');
const Module = require('module');

// 1. NNI 3.0's REST server calls app.listen(port) with no host, so it listens on every interface with an
//    unauthenticated API. A listen() given a port and no host binds to $HEADNAS_NNI_HOST instead.
const host = process.env.HEADNAS_NNI_HOST || '127.0.0.1';
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === 'number' && (args.length === 1 || typeof args[1] === 'function')) {
    args.splice(1, 0, host);
  }
  return listen.apply(this, args);
};

// 2. Concurrent trials swap parameters (training_service/v3/compat.js, V3asV1): submitTrialJob pushes each
//    trial's parameter onto one FIFO, and a trial's request_parameter is answered with the FIFO's head,
//    whichever trial submitted it. With two or more trials at once, a trial that starts faster scores
//    another trial's candidate: the web UI then shows each trial with its own parameters and another
//    one's metric, and NNI ends a candidate's model when the wrong trial ends. Here a request is answered
//    with the requesting trial's own parameter, once submitTrialJob has recorded its form (a trial can
//    ask before createTrial returns, so it waits for that); anything else goes to NNI's own handler.
const FORM_WAIT_MS = 30000;

function ownParameter(service, trialId) {
  const deadline = Date.now() + FORM_WAIT_MS;
  return new Promise((resolve) => {
    const look = () => {
      const form = service.trialJobs[trialId] && service.trialJobs[trialId].form;
      if (form && form.sequenceId >= 0) {  // NNI's placeholder form (trial started, not yet recorded) has -1
        resolve(form.hyperParameters.value);
      } else if (Date.now() > deadline) {
        resolve(null);
      } else {
        setTimeout(look, 5);
      }
    };
    look();
  });
}

function patchV3asV1(V3asV1) {
  if (V3asV1.headnasPatched) return;
  V3asV1.headnasPatched = true;
  const start = V3asV1.prototype.start;
  V3asV1.prototype.start = function () {
    const service = this;
    const onRequest = this.v3.onRequestParameter.bind(this.v3);
    this.v3.onRequestParameter = (nniHandler) => onRequest(async (trialId) => {
      const value = service.allocatedParameters.has(trialId) ? null : await ownParameter(service, trialId);
      const queued = value === null ? -1 : service.parameters.indexOf(value);
      if (queued < 0) return nniHandler(trialId);  // a resumed trial's, or unknown: NNI's own answer
      service.parameters.splice(queued, 1);
      await service.v3.sendParameter(trialId, value);
    });
    return start.call(this);
  };
}

const load = Module._load;
Module._load = function (...args) {
  const exported = load.apply(this, args);
  if (exported && typeof exported.V3asV1 === 'function') patchV3asV1(exported.V3asV1);
  return exported;
};
module.exports = { patchV3asV1 };
