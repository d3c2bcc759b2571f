"""Every accommodation of NNI 3.0 (2023, unmaintained) to today's torch lives here.

1. ``import nni.nas.nn.pytorch`` walks ``torch.nn`` and warns that ``torch.nn.parameter.Buffer``
   (and other new non-module classes) "is not a nn.Module ... your PyTorch version might not be
   supported". The walk only builds NNI's list of wrappable layers; these classes are not layers,
   so the warning is harmless noise and is filtered (that exact message only).
2. ``DartsLightningModule.arch_parameters`` (DARTS, GumbelDARTS, Proxyless) returns
   ``list(set(params))``: the order of the architecture parameters changes from one process to
   the next, so resuming from a Lightning checkpoint restores the architecture optimizer's Adam
   state onto the wrong tensors ("size of tensor a (3) must match ... b (2)", seen here).
   ``patch_darts_arch_parameter_order()`` de-duplicates in module order instead. It is applied by
   ``strategies.oneshot`` (importing NNI's one-shot code pulls in Lightning; ``supernet`` stays light).
3. ``nnictl`` imports ``pkg_resources``, which setuptools >= 81 no longer ships: setuptools is
   pinned below 81 in setup.cfg / requirements.txt (nothing to patch at run time).
4. Every experiment start (web UI or not) takes ``nnictl``'s ``SimplePreemptiveLock`` on
   ``~/.local/nni/experiments/.experiment``. That class subclasses ``filelock.SoftFileLock`` but
   records the lock in ``self._lock_file_fd``, an attribute filelock stopped reading in 3.12 (its
   state moved to ``self._context``): with a newer filelock the lock never counts as taken and the
   start polls forever, silently (seen on the GPU machine's image, filelock 3.2x: the search hung
   at "run directory:" until killed). requirements.txt pins filelock 3.11, but ``pip install .``
   beside a newer torch need not. ``patch_nnictl_lock()`` gives the class its own acquire/release
   with NNI's semantics (a ``<lock>.<pid>`` file made with O_EXCL; other processes' files younger
   than ``stale`` seconds block) and no dependence on filelock's internals. Applied by
   ``strategies.trials``, which starts the experiments.
5. ``Experiment.view`` of a finished NAS experiment fails with "`search_space` field can not be
   customized in NAS experiment" (seen from a fresh clone): NNI stores the space it generated in
   the experiment's config, then reloading that config through ``NasExperimentConfig`` refuses it;
   it also refuses a stored ``trialCodeDirectory`` other than the current directory.
   ``patch_nas_experiment_view()`` clears both from the config NNI reloads for viewing (a viewed
   experiment runs no trial, so neither is used). Applied by ``supernet.view``.
6. NNI's manager serves its REST API (which can stop an experiment or change it, with no
   authentication) with ``app.listen(port)``: on every interface, and NNI has no option for it.
   ``patched_manager(host)`` starts it with ``NODE_OPTIONS=--require manager_preload.js``, a preload
   that gives such a ``listen`` the host (127.0.0.1 unless ``--host`` says otherwise). Applied by
   ``strategies.trials`` and ``supernet.view`` around the manager's start.
7. With ``--concurrency`` > 1, NNI's manager hands each trial that asks for its parameter the oldest
   one submitted, not its own (``V3asV1`` in ``training_service/v3/compat.js``: one FIFO for all
   trials; reported upstream as NNI issue #5726). Seen here: at concurrency 8, 75 of 96 web-UI
   trials showed another trial's metric beside their own parameters. The same preload answers a
   trial's request with that trial's own parameter (``tests/test_nni_compat.py`` runs it against the
   shipped ``compat.js``; ``tests/test_search.py`` checks a concurrent web-UI search trial by trial).
"""
from __future__ import annotations

import contextlib
import glob
import os
import time
import warnings
from pathlib import Path

_BUFFER_WARNING = r".*is found to be not a nn\.Module, which is unexpected.*"


def silence_layer_scan_warning() -> None:
    warnings.filterwarnings("ignore", message=_BUFFER_WARNING, category=RuntimeWarning)


silence_layer_scan_warning()


def _ordered_arch_parameters(self) -> list:
    params = []
    for module in self.supernet_modules():
        if hasattr(module, "arch_parameters"):
            params += list(module.arch_parameters())
    return list(dict.fromkeys(params))  # NNI: list(set(params)), whose order varies per process


def patch_darts_arch_parameter_order() -> None:
    from nni.nas.oneshot.pytorch.differentiable import DartsLightningModule
    DartsLightningModule.arch_parameters = _ordered_arch_parameters


def _lock_files_blocking(lock) -> list[str]:
    """Other holders' ``<lock>.<pid>`` files that still count (younger than ``stale``, or any if stale < 0)."""
    now, out = time.time(), []
    for name in glob.glob(glob.escape(lock._compat_base) + ".*"):
        try:
            age = now - os.stat(name).st_mtime
        except OSError:  # released meanwhile
            continue
        if lock._stale < 0 or age < lock._stale:
            out.append(name)
    return out


def _lock_acquire(self, timeout=None, poll_interval: float = 0.05, **_):
    """filelock's contract: ``timeout`` None means the lock's own ``timeout``; a negative one waits
    for ever; after ``timeout`` seconds without the lock, ``filelock.Timeout`` is raised."""
    import filelock
    depth = getattr(self, "_compat_depth", 0)
    if depth == 0:
        timeout = self.timeout if timeout is None else timeout
        deadline = None if timeout is None or timeout < 0 else time.monotonic() + timeout
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_TRUNC
        while True:
            if not _lock_files_blocking(self):
                try:
                    self._compat_fd = os.open(self._lock_file_name, flags)
                    break
                except OSError:
                    pass
            if deadline is not None and time.monotonic() >= deadline:
                raise filelock.Timeout(self._lock_file_name)
            time.sleep(poll_interval)
    self._compat_depth = depth + 1  # re-entrant, like filelock's locks
    return self


def _lock_release(self, force: bool = False) -> None:
    depth = 0 if force else getattr(self, "_compat_depth", 0) - 1
    if depth <= 0 and getattr(self, "_compat_fd", None) is not None:
        os.close(self._compat_fd)
        self._compat_fd = None
        try:
            os.remove(self._lock_file_name)
        except OSError:
            pass
    self._compat_depth = max(depth, 0)


def patch_nnictl_lock() -> None:
    from nni.tools.nnictl.common_utils import SimplePreemptiveLock
    if getattr(SimplePreemptiveLock, "_compat_patched", False):
        return
    original_init = SimplePreemptiveLock.__init__

    def __init__(self, lock_file, stale=-1):
        original_init(self, lock_file, stale=stale)
        self._compat_base = lock_file  # NNI names its per-process files "<lock_file>.<pid>"

    SimplePreemptiveLock.__init__ = __init__
    SimplePreemptiveLock.acquire = _lock_acquire
    SimplePreemptiveLock.release = _lock_release
    SimplePreemptiveLock.__enter__ = lambda self: self.acquire()
    SimplePreemptiveLock.__exit__ = lambda self, *exc: self.release()
    SimplePreemptiveLock.is_locked = property(lambda self: getattr(self, "_compat_depth", 0) > 0)
    SimplePreemptiveLock._compat_patched = True


def patch_nas_experiment_view() -> None:
    from nni.experiment import launcher
    if getattr(launcher, "_compat_patched", False):
        return
    original = launcher.get_stopped_experiment_config_json

    def config_json(exp_id: str, exp_dir: str | None = None) -> dict | None:
        config = original(exp_id, exp_dir)
        if config and config.get("experimentType") == "nas":
            config = {**config, "searchSpace": {}, "trialCodeDirectory": os.getcwd()}
        return config
    launcher.get_stopped_experiment_config_json = config_json
    launcher._compat_patched = True

MANAGER_PRELOAD_JS = Path(__file__).with_name("manager_preload.js")


@contextlib.contextmanager
def patched_manager(host: str):
    """NNI's manager, started inside, listens on ``host`` only (item 6) and gives each trial its own
    parameter (item 7): the preload goes into the environment the manager inherits, and both
    variables are restored after."""
    saved = {k: os.environ.get(k) for k in ("NODE_OPTIONS", "HEADNAS_NNI_HOST")}
    os.environ["NODE_OPTIONS"] = f"{saved['NODE_OPTIONS'] or ''} --require {MANAGER_PRELOAD_JS}".strip()
    os.environ["HEADNAS_NNI_HOST"] = host
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
