"""NNI trial plumbing of the multi-trial search: what runs a candidate as a trial and what keeps it.

- ``HeadChoices`` is the space's labels as an NNI model space; a trial gets a ``Candidate`` (its
  choices) and scores it on the search state's cached encoder outputs.
- ``Ledger``: every scored candidate is appended to ``trials.jsonl``, which a resumed search
  answers from (NNI checkpoints only at start and stop, which a kill -9 never reaches).
- ``ScoringServer``: web-UI trials (``strategies.trial_entry``) ask the search process, where the
  scorer is loaded once, for their metrics.
- ``run_nni``: the NNI experiment (web UI, or NNI's sequential engine in-process), its port and a
  killed run's leftover manager.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import secrets
import signal
import sys
import threading
import time
from multiprocessing.connection import AuthenticationError, Listener
from pathlib import Path
from typing import Any

import nni
from torch import nn

from supernet.core.files import atomic_write_text
from supernet.core.nni_compat import patched_manager, patch_nnictl_lock
from supernet.core.webui import check_port_free, url, warn_if_exposed
from supernet.nn.space import get_space
from supernet.nn.supernet import LabelSpace
from supernet.scoring.candidates import cached_scorer

from .config import SearchConfig

patch_nnictl_lock()  # NNI's experiment lock hangs with filelock >= 3.12 (see nni_compat)


class Candidate(nn.Module):
    """What a trial receives: the choices of one head (weights come from the search state)."""

    def __init__(self, choices: dict[str, Any]):
        super().__init__()
        self.choices = choices


class HeadChoices(LabelSpace):
    """The labels of a space, for multi-trial strategies. Its frozen form is a ``Candidate``:
    trials do not rebuild the encoder, they score on its cached outputs. Built from the space's
    name, so NNI can re-create it in a trial process."""

    def __init__(self, space: str):
        super().__init__(get_space(space))
        self.space_name = space

    @classmethod
    def create_fixed_module(cls, sample: dict, space: str) -> Candidate:
        return Candidate(get_space(space).choices_of(sample))

    def freeze(self, sample: dict) -> Candidate:
        return Candidate(self.choices_of(sample))


LEDGER = "trials.jsonl"
STRATEGY_STATE = "strategy_state.pt"
EXPERIMENT_RECORD = "experiment.json"


def read_ledger(path: Path) -> list[dict[str, Any]]:
    """Finished trials in finish order, {'choices', 'metrics'}; a line cut short by a kill is dropped."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def _ledger_key(choices: dict[str, Any]) -> str:
    return json.dumps(choices, sort_keys=True)


class Ledger:
    """``trials.jsonl`` as a lookup: parsed once, then kept in step with this process's appends.

    The file is re-read only when its size differs from what this process last saw (another
    process appended, or ``--overwrite`` removed it), so a search of n candidates reads it
    O(1) times instead of n times.
    """

    def __init__(self, path: Path):
        self.path, self._known, self._size = path, {}, -1

    def _sync(self) -> None:
        size = self.path.stat().st_size if self.path.is_file() else 0
        if size != self._size:
            self._known = {_ledger_key(r["choices"]): r["metrics"] for r in read_ledger(self.path)}
            self._size = size

    def score_or_recall(self, scorer, choices: dict[str, Any]) -> dict[str, float]:
        """The candidate's metrics: from the ledger if a run before a resume scored it, else scored
        and appended there. 'default' (NNI's metric) is the task's main metric."""
        self._sync()
        key = _ledger_key(choices)
        scores = self._known.get(key)
        if scores is None:
            scores = scorer.score(choices)
            line = json.dumps({"choices": choices, "metrics": scores}) + "\n"
            # one O_APPEND write of a short line: concurrent trials never interleave their lines
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line.encode())
                os.fsync(fd)
                size = os.fstat(fd).st_size
            finally:
                os.close(fd)
            self._known[key] = scores
            # another process's line landing in between would make the sizes disagree: re-read then
            self._size = size if size == self._size + len(line.encode()) else -1
        return {"default": scorer.objective_value(scores), **scores}


@functools.lru_cache(maxsize=4)
def _ledger(path: str) -> Ledger:
    return Ledger(Path(path))


def evaluate_candidate(model: Candidate, state_path: str, ledger: str, **server) -> None:
    """The trial of the in-process engine (web-UI trials go through ``strategies.trial_entry``)."""
    nni.report_final_result(_ledger(ledger).score_or_recall(cached_scorer(state_path), model.choices))


class ScoringServer:
    """Scores candidates for web-UI trials in the search process, where the scorer is loaded once.

    A trial (``strategies.trial_entry``) connects over localhost with a per-run key, sends its
    sample and receives the metrics; the ledger has this one writer.
    """

    def __init__(self, state_path: Path, ledger: Path):
        self.key = secrets.token_hex(16)
        self.listener = Listener(("127.0.0.1", 0), authkey=self.key.encode())
        self.host, self.port = self.listener.address
        self.scorer, self.ledger, self.lock = cached_scorer(str(state_path.resolve())), Ledger(ledger), threading.Lock()
        threading.Thread(target=self._serve, daemon=True, name="scoring-server").start()

    def evaluator_kwargs(self) -> dict[str, Any]:
        return {"server_host": self.host, "server_port": self.port, "server_key": self.key}

    def _serve(self) -> None:
        while True:
            try:
                conn = self.listener.accept()
            except AuthenticationError:
                continue  # not one of our trials
            except OSError:
                return  # closed
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn) -> None:
        with conn:
            try:
                choices = conn.recv()
                with self.lock:
                    conn.send(self.ledger.score_or_recall(self.scorer, choices))
            except (EOFError, OSError, ValueError) as e:
                logging.getLogger(__name__).warning("a trial's scoring request failed: %s", e)

    def close(self) -> None:
        self.listener.close()


def stop_stale_manager(work_dir: Path, port: int) -> None:
    """A killed run leaves its NNI manager (its own process group) serving the port: stop it on resume.
    Only the manager of the experiment recorded in this run directory is touched."""
    record = work_dir / EXPERIMENT_RECORD
    if not record.is_file():
        return
    from nni.tools.nnictl.config_utils import Experiments
    exp_id = json.loads(record.read_text())["id"]
    info = Experiments().get_all_experiments().get(exp_id) or {}
    pid = info.get("pid")
    if not pid or info.get("port") != port or not _is_nni_manager(pid):
        return
    # SIGTERM first (NNI's manager shuts down cleanly); it can wait on the dead search process's
    # channel, so after 10 s its whole process group (it runs in its own) is killed
    for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig) if sig == signal.SIGKILL else os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        deadline = time.time() + wait_s
        while time.time() < deadline:
            try:
                check_port_free(port)
                return
            except ValueError:
                time.sleep(0.1)


def _is_nni_manager(pid: int) -> bool:
    """The manifest's pid may have been reused since: only a live NNI manager is stopped."""
    try:
        return b"nni" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False  # not running
    except OSError:
        return True  # no /proc (macOS): trust NNI's manifest


def run_nni(space: str, state_path: Path, cfg: SearchConfig, work_dir: Path, ledger: Path, strategy,
             trials: int) -> None:
    from nni.nas.evaluator import FunctionalEvaluator
    from nni.nas.experiment import NasExperiment, NasExperimentConfig

    if cfg.webui:
        stop_stale_manager(work_dir, cfg.port)
        check_port_free(cfg.port, cfg.host)
        warn_if_exposed(cfg.host, cfg.port)
    # local web-UI trials ask a scoring server here; trials on other machines score for themselves
    server = ScoringServer(state_path, ledger) if cfg.webui and not cfg.training_service_config else None
    evaluator = FunctionalEvaluator(evaluate_candidate, state_path=str(state_path.resolve()),
                                    ledger=str(ledger.resolve()), **(server.evaluator_kwargs() if server else {}))
    exp_config = NasExperimentConfig("ts" if cfg.webui else "sequential", "simplified", "local" if cfg.webui else None)
    if cfg.training_service_config:
        from .cluster import apply_training_service
        apply_training_service(exp_config, cfg.training_service_config)
    elif cfg.webui:
        # NNI's template is "{envs} {python} -m nni.nas.execution.training_service trial"; with this
        # "python", the light entry runs and ignores the rest (strategies/trial_entry.py says why)
        exp_config._trial_command_params = {"python": f"{sys.executable} -m strategies.trial_entry"}
    exp_config.max_trial_number = trials
    exp_config.trial_concurrency = cfg.concurrency if cfg.webui else 1
    exp_config.experiment_working_directory = str(work_dir.resolve())
    exp_config.experiment_name = f"{space}-{cfg.strategy}"
    if not cfg.webui:
        exp_config.execution_engine.max_model_count = trials
    exp = NasExperiment(HeadChoices(space), evaluator, strategy, exp_config)
    atomic_write_text(work_dir / EXPERIMENT_RECORD, json.dumps({"id": exp.id, "port": cfg.port}) + "\n")
    logging.getLogger("nni").setLevel(logging.WARNING)
    if cfg.webui:
        print(f"NNI web UI: {url(cfg.host, cfg.port)}  (experiment {exp.id}; reopen later with "
              f"`python -m supernet.view {work_dir.parent}`)", flush=True)
    try:
        with patched_manager(cfg.host):  # loopback only; each trial its own parameter (nni_compat)
            exp.run(port=cfg.port)
        if cfg.webui and cfg.linger > 0:
            print(f"search done; the web UI stays up for {cfg.linger:g} s", flush=True)
            time.sleep(cfg.linger)
    finally:
        exp.stop()
        if server:
            server.close()
