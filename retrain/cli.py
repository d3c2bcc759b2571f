"""Command line of ``python -m retrain`` (the work is ``retrain.run.run_retrain``)."""
from __future__ import annotations

from supernet.core.cli import add_config_group, add_resume, parser, resumed_output, run_cli
from supernet.core.config import from_args
from supernet.core.files import OutputConfig
from supernet.data.sources import DataConfig
from supernet.nn.encoder import EncoderConfig

from .run import HeadsConfig, RetrainConfig, run_retrain


def build_parser():
    p = parser("python -m retrain", "Fine-tune the plain model of an exported architecture (pretrained encoder + "
                                    "fresh head) for several seeds and report the task's official dev metrics, "
                                    "mean ± std; optionally the linear-head baseline with the same loop and budget.")
    p.add_argument("architecture", help="an architecture JSON (arch_top1.json of a search run), or 'linear'")
    add_config_group(p, "heads", HeadsConfig)
    add_config_group(p, "data", DataConfig, defaults={"task": None})
    add_config_group(p, "encoder (default: the one the architecture was searched on)", EncoderConfig)
    add_config_group(p, "fine-tuning (the same for every head)", RetrainConfig)
    add_resume(add_config_group(p, "output", OutputConfig), "retrain (finished seeds are kept if trained with the "
                                                            "same settings; an unfinished one continues from its "
                                                            "last checkpoint)")
    return p


def run(args):
    # the task comes from the architecture record unless --task is given
    output_dir, resume = resumed_output(args)
    return run_retrain(args.architecture, from_args(HeadsConfig, args), args.task,
                       lambda task: from_args(DataConfig, args, task=task), from_args(EncoderConfig, args),
                       from_args(RetrainConfig, args), output_dir, args.overwrite, resume)


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), run, argv)
