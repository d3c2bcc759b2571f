"""Reopen a finished search in the NNI web UI: ``python -m supernet.view <run dir> [--port 8080]``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def find_experiment(run_dir: Path) -> str:
    ids = sorted(p.name for p in (run_dir / "nni").glob("*")
                 if p.is_dir() and p.name != "_latest" and (p / "db" / "nni.sqlite").is_file())
    if not ids:
        raise FileNotFoundError(f"{run_dir} holds no NNI experiment (was it searched with --no-webui?)")
    return ids[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m supernet.view", description=__doc__)
    parser.add_argument("run_dir", type=Path, help="a run directory written by python -m supernet.search")
    parser.add_argument("--port", type=int, default=8080, help="web UI port")
    args = parser.parse_args(argv)
    from strategies.trials import check_port_free
    try:
        exp_id = find_experiment(args.run_dir)
        check_port_free(args.port)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from nni.experiment import Experiment
    print(f"NNI web UI: http://127.0.0.1:{args.port}  (experiment {exp_id}; Ctrl-C to stop)", flush=True)
    Experiment(None, id=exp_id).view(port=args.port, non_blocking=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
