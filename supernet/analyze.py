"""``python -m supernet.analyze``: linear CKA and per-layer probes between two encoders (see
``supernet.scoring.analysis``)."""
from __future__ import annotations

import sys

from supernet.core.cli import add_config_group, parser, run_cli
from supernet.core.config import from_args
from supernet.core.files import OutputConfig
from supernet.data.sources import DataConfig
from supernet.scoring.analysis import AnalysisConfig, analyze


def build_parser():
    p = parser("python -m supernet.analyze", "Compare what two encoders compute, layer by layer: linear CKA "
                                             "between every pair of layers and a linear probe per layer.")
    add_config_group(p, "encoders", AnalysisConfig)
    add_config_group(p, "data", DataConfig, defaults={"task": "sst2"})
    add_config_group(p, "output", OutputConfig, defaults={"output_dir": None})
    return p


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), lambda a: analyze(from_args(AnalysisConfig, a), from_args(DataConfig, a),
                                                     a.output_dir, a.overwrite), argv)


if __name__ == "__main__":
    sys.exit(main())
