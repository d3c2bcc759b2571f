"""``python -m supernet.search``: fine-tune a weight-sharing supernet of heads once, then search it.

Writes into the run directory: TensorBoard events, ``checkpoint.pt`` (resumable), the NNI
experiment, ``arch_top<k>.json`` (architecture records), ``search_summary.json``, ``trajectory.png``
and ``pareto.json`` / ``pareto.png``. The pipeline itself is ``strategies.pipeline``.
"""
from __future__ import annotations

import sys
from pathlib import Path

from strategies.config import OneShotConfig, PickConfig, SearchConfig
from strategies.pipeline import SearchJob, run_search
from supernet.core.cli import add_config_group, add_resume, parser, resumed_output, run_cli
from supernet.core.config import explicit_dests, from_args
from supernet.core.errors import InputError
from supernet.core.files import OutputConfig
from supernet.data.sources import DataConfig
from supernet.nn.encoder import EncoderConfig
from supernet.train.supernet import TrainConfig

PARTS = {"search": SearchConfig, "pick": PickConfig, "oneshot": OneShotConfig, "data": DataConfig,
         "encoder": EncoderConfig, "train": TrainConfig}
TITLES = {"search": "search", "pick": "which head is returned (never worse than the linear head: --pick safe)",
          "oneshot": "one-shot architecture learning (darts, gumbel_darts, proxyless, enas)",
          "data": "data", "encoder": "encoder", "train": "supernet training"}


def build_parser():
    p = parser("python -m supernet.search", "Fine-tune a weight-sharing supernet of classification heads on a BERT "
                                            "encoder once, then search it (every candidate inherits the "
                                            "supernet's weights).")
    for part, cls in PARTS.items():
        add_config_group(p, TITLES[part], cls)
    add_resume(add_config_group(p, "output", OutputConfig), "search with its stored settings", bare=False)
    return p


def run(args, argv: list[str] | None) -> None:
    if not args.resume:
        job = SearchJob(**{part: from_args(cls, args) for part, cls in PARTS.items()})
        output_dir, _ = resumed_output(args)  # no --resume here: the output directory, ~ expanded
        run_search(job, Path(output_dir) if output_dir else None, overwrite=args.overwrite)
        return
    run_dir = Path(args.resume).expanduser()
    stored = SearchJob.load(run_dir)
    explicit = explicit_dests(build_parser(), argv) - {"resume"}
    if explicit & {"output_dir", "overwrite"}:
        raise InputError("--resume RUN_DIR continues that run in place; drop --output-dir / --overwrite")
    job = stored.resumed_with({k: getattr(args, k) for k in explicit})
    run_search(job, run_dir, resume=True)


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), lambda args: run(args, argv), argv)


if __name__ == "__main__":
    sys.exit(main())
