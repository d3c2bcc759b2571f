"""``python -m retrain.compare``: linear head vs weight-sharing search vs BO-Hyperband (see ``retrain.comparison``)."""
from __future__ import annotations

import sys

from strategies.config import PickConfig
from supernet.core.cli import add_config_group, add_resume, parser, resumed_output, run_cli
from supernet.core.config import from_args
from supernet.core.files import OutputConfig
from supernet.data.sources import DataConfig
from supernet.nn.encoder import EncoderConfig

from .bohb import BOHBConfig
from .comparison import CompareConfig, run_compare
from .run import RetrainConfig


def build_parser():
    p = parser("python -m retrain.compare", "Linear head vs weight-sharing search vs BO-Hyperband on the same task, "
                                            "fine-tuning budget and seeds, every head retrained the same way.")
    add_config_group(p, "data", DataConfig)
    add_config_group(p, "encoder and fine-tuning (shared by every retrain and every BO-HB trial)", EncoderConfig,
                     RetrainConfig)
    add_config_group(p, "searches", CompareConfig, BOHBConfig, PickConfig)
    add_resume(add_config_group(p, "output", OutputConfig), "comparison (each finished stage is kept)")
    return p


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), run, argv)


def run(a):
    output_dir, resume = resumed_output(a)
    return run_compare(from_args(CompareConfig, a), from_args(BOHBConfig, a), from_args(DataConfig, a),
                       from_args(EncoderConfig, a), from_args(RetrainConfig, a), output_dir, a.overwrite, resume,
                       from_args(PickConfig, a))


if __name__ == "__main__":
    sys.exit(main())
