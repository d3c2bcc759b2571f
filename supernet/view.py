"""Reopen a finished search in the NNI web UI: ``python -m supernet.view <run dir> [--port 8080]``."""
from __future__ import annotations

import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from supernet.core.cli import add_config_group, parser, run_cli
from supernet.core.config import Config, from_args
from supernet.core.errors import MissingInput
from supernet.core.nni_compat import patched_manager
from supernet.core.webui import check_host, check_port_free, check_port_range, host_arg, port_arg, url, warn_if_exposed


def find_experiment(run_dir: Path) -> str:
    ids = sorted(p.name for p in (run_dir / "nni").glob("*")
                 if p.is_dir() and p.name != "_latest" and (p / "db" / "nni.sqlite").is_file())
    if not ids:
        raise MissingInput(f"{run_dir} holds no NNI experiment (was it searched with --no-webui?)")
    return ids[-1]


def view(run_dir: Path, cfg: ViewConfig) -> None:
    """Serve the run's experiment (its trials and metrics) at http://<host>:<port> until Ctrl-C."""
    from supernet.core.nni_compat import patch_nas_experiment_view
    port = cfg.port
    exp_id = find_experiment(run_dir)
    check_port_free(port, cfg.host)
    warn_if_exposed(cfg.host, port)
    from nni.experiment import Experiment, launcher
    patch_nas_experiment_view()  # NNI 3.0 cannot reload a finished NAS experiment's config (see nni_compat)
    exp = Experiment(None, id=exp_id)
    # from the run directory itself, not from NNI's manifest of experiments in the home directory
    exp.config = launcher.get_stopped_experiment_config(exp_id, exp_dir=str((run_dir / "nni").resolve()))
    print(f"NNI web UI: {url(cfg.host, port)}  (experiment {exp_id}; Ctrl-C to stop)", flush=True)
    with patched_manager(cfg.host):  # loopback only; each trial its own parameter (nni_compat)
        _serve(exp, port)


def _serve(exp, port: int) -> None:
    """NNI's ``Experiment.view`` with two fixes: a plain kill (SIGTERM) stops NNI's manager as Ctrl-C
    does, and an interrupt while the manager starts is held until it has started (interrupted
    mid-start, NNI's own view leaves the manager running, orphaned, on the port)."""
    from nni.experiment.experiment import RunMode
    exp._action = "view"
    exp.load_checkpoint()
    pending: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: pending.append(signum))
    try:
        exp.start(port=port, debug=False, run_mode=RunMode.Detach)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _interrupt)
        while not pending:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        exp.stop()


def _interrupt(signum, frame):
    raise KeyboardInterrupt


@dataclass(frozen=True)
class ViewConfig(Config):
    """Where the reopened web UI listens."""

    port: int = port_arg()
    host: str = host_arg()

    def __post_init__(self):
        check_port_range(self.port)
        check_host(self.host)


def main(argv: list[str] | None = None) -> int:
    p = parser("python -m supernet.view", __doc__)
    p.add_argument("run_dir", type=Path, help="a run directory written by python -m supernet.search")
    add_config_group(p, "web UI", ViewConfig)
    return run_cli(p, lambda args: view(args.run_dir, from_args(ViewConfig, args)), argv)


if __name__ == "__main__":
    sys.exit(main())
