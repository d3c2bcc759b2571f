"""NNI 3.0 accommodations: the import-time warning filter, and the DARTS parameter-order patch."""
import os
import subprocess
import sys
import time

import pytest

from conftest import ROOT

_PROBE = ("import warnings; warnings.simplefilter('always'); {pre}"
          "import nni.nas.nn.pytorch; import warnings as w; "
          "w.warn('an unrelated RuntimeWarning', RuntimeWarning)")


def _stderr(pre: str) -> str:
    return subprocess.run([sys.executable, "-c", _PROBE.format(pre=pre)], cwd=ROOT, capture_output=True,
                          text=True, check=True).stderr


def test_nni_warns_without_the_filter():
    assert "is found to be not a nn.Module" in _stderr("")


def test_filter_removes_that_warning_and_keeps_others():
    err = _stderr("import supernet; ")
    assert "is found to be not a nn.Module" not in err
    assert "an unrelated RuntimeWarning" in err


def test_darts_arch_parameters_keep_module_order_after_the_patch():
    import torch
    from nni.nas.oneshot.pytorch.differentiable import DartsLightningModule
    from torch import nn

    import strategies.oneshot  # noqa: F401  (applies the patch)
    from supernet.core.nni_compat import _ordered_arch_parameters

    assert DartsLightningModule.arch_parameters is _ordered_arch_parameters

    class Holder:
        def __init__(self, params):
            self.params = params

        def arch_parameters(self):
            return self.params

    alphas = [nn.Parameter(torch.zeros(n)) for n in range(2, 40)]
    fake = type("Fake", (), {"supernet_modules": lambda self: [Holder(alphas[:20]), Holder(alphas[10:])]})()
    assert DartsLightningModule.arch_parameters(fake) == alphas  # module order, each once


_HOLD = """
import sys, time
import strategies.trials  # noqa: F401  (applies the lock patch)
from nni.tools.nnictl.common_utils import SimplePreemptiveLock
lock = SimplePreemptiveLock(sys.argv[1], stale=-1)
with lock:
    print("got", flush=True)
"""


def _lock(path, stale=-1):
    from nni.tools.nnictl.common_utils import SimplePreemptiveLock

    import strategies.trials  # noqa: F401  (applies the patch)
    return SimplePreemptiveLock(str(path), stale=stale)


def test_nnictl_lock_is_patched_and_reentrant(tmp_path):
    import os
    lock = _lock(tmp_path / "x.lock")
    held = tmp_path / f"x.lock.{os.getpid()}"
    with lock:
        with lock:  # re-entrant, as filelock's locks are
            assert held.exists() and lock.is_locked
        assert held.exists()
    assert not held.exists() and not lock.is_locked


def test_nnictl_lock_blocks_another_process_until_released(tmp_path):
    import time
    lock = _lock(tmp_path / "x.lock")
    lock.acquire()
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(tmp_path / "x.lock")], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(3)
        assert proc.poll() is None  # waiting for our lock
    finally:
        lock.release()
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and out.strip() == "got"


def test_nnictl_lock_ignores_a_stale_holder(tmp_path):
    import os
    import time
    dead = tmp_path / "x.lock.999999"
    dead.write_text("")
    old = time.time() - 10
    os.utime(dead, (old, old))
    lock = _lock(tmp_path / "x.lock", stale=2)  # NNI's experiment list uses stale=2
    t = time.perf_counter()
    with lock:
        assert lock.is_locked
    assert time.perf_counter() - t < 5


def test_nnictl_lock_times_out_instead_of_waiting_for_ever(tmp_path):
    import filelock
    held = _lock(tmp_path / ".experiment")
    held.acquire()
    other = _lock(tmp_path / ".experiment")
    other._lock_file_name += "x"  # another holder's file name, as a second process would have
    t0 = time.monotonic()
    with pytest.raises(filelock.Timeout):
        other.acquire(timeout=0.3)
    assert 0.25 < time.monotonic() - t0 < 5
    held.release()
    other.acquire(timeout=0.3)  # free now
    other.release()


def test_the_manager_preload_is_set_for_its_start_only(monkeypatch):
    """NODE_OPTIONS carries the preload while NNI's manager starts, and is restored after (a user's own
    NODE_OPTIONS kept); the preload itself is shipped with the package."""
    from supernet.core.nni_compat import MANAGER_PRELOAD_JS, patched_manager
    monkeypatch.setenv("NODE_OPTIONS", "--max-old-space-size=100")
    monkeypatch.delenv("HEADNAS_NNI_HOST", raising=False)
    with patched_manager("0.0.0.0"):
        assert os.environ["NODE_OPTIONS"] == f"--max-old-space-size=100 --require {MANAGER_PRELOAD_JS}"
        assert os.environ["HEADNAS_NNI_HOST"] == "0.0.0.0"
    assert os.environ["NODE_OPTIONS"] == "--max-old-space-size=100" and "HEADNAS_NNI_HOST" not in os.environ
    assert "net.Server.prototype.listen" in MANAGER_PRELOAD_JS.read_text()


# NNI's own V3asV1 (the manager's local training service), driven with a stand-in for its trial keeper:
# trials B and A ask for their parameters in the order opposite to their submission, and C asks before
# its submission is recorded (NNI's placeholder form first, as onTrialStart leaves it).
_PARAMETER_HARNESS = r"""
const path = require('path');
const [nniNode, preload] = process.argv.slice(1);
if (preload) require(preload);
require(path.join(nniNode, 'node_modules/app-module-path')).addPath(nniNode);
require('common/globals');  // NNI's modules expect it loaded first, as main.js does
const { V3asV1 } = require(path.join(nniNode, 'training_service/v3/compat.js'));
const sent = [];
let request;
const v3 = new Proxy({
  init: async () => {}, start: async () => [], uploadDirectory: async () => {},
  onRequestParameter: (handler) => { request = handler; },
  sendParameter: async (trial, parameter) => { sent.push([trial, parameter]); },
}, { get: (known, key) => (key in known ? known[key] : () => {}) });
const service = Object.assign(Object.create(V3asV1.prototype), {
  v3, trialJobs: {}, parameters: [], allocatedParameters: new Map(), environments: [],
  config: { trialCodeDirectory: '.' }, startDeferred: { resolve() {} },
});
const form = (sequenceId, value) => ({ sequenceId, hyperParameters: { value, index: 0 } });
(async () => {
  await service.start();
  service.parameters.push('p0', 'p1', 'p2');  // submitted in this order
  service.trialJobs.A = { form: form(0, 'p0') };
  service.trialJobs.B = { form: form(1, 'p1') };
  await request('B');
  await request('A');
  service.trialJobs.C = { form: form(-1, 'null') };
  const late = request('C');
  setTimeout(() => { service.trialJobs.C = { form: form(2, 'p2') }; }, 30);
  await late;
  console.log(JSON.stringify({ sent, left: service.parameters }));
})();
"""


def _parameters_sent(preload: str) -> dict:
    import json

    import nni_node
    node_dir = os.path.dirname(nni_node.__file__)
    out = subprocess.run([os.path.join(node_dir, "node"), "-e", _PARAMETER_HARNESS, node_dir, preload],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    return json.loads(out)


def test_nni_answers_a_trial_with_another_trials_parameter():
    """NNI 3.0 as shipped (issue #5726): the first trial to ask gets the oldest parameter, its own or not."""
    assert _parameters_sent("")["sent"] == [["B", "p0"], ["A", "p1"], ["C", "p2"]]


def test_the_preload_gives_each_trial_its_own_parameter():
    from supernet.core.nni_compat import MANAGER_PRELOAD_JS
    got = _parameters_sent(str(MANAGER_PRELOAD_JS))
    assert got == {"sent": [["B", "p1"], ["A", "p0"], ["C", "p2"]], "left": []}
