"""``python -m supernet.space``: print a search space's choices and its exact size (the space itself is
``supernet.nn.space``)."""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass

from supernet.core.cli import add_config_group, parser, run_cli
from supernet.core.config import Config, arg, from_args
from supernet.nn.space import as_json, describe, get_space, space_arg


@dataclass(frozen=True)
class SpaceView(Config):
    """Which space to show, and how."""

    space: str = space_arg("pairs", aliases=("--preset",))
    json: bool = arg(False, "print JSON (labels, candidates, size) for scripts")


def show(view: SpaceView) -> None:
    space = get_space(view.space)  # a bad name is one line naming it
    print(json.dumps(as_json(space), indent=2) if view.json else describe(space))


def main(argv: list[str] | None = None) -> int:
    p = parser("python -m supernet.space", "Print a head search space's choices and its exact size.")
    add_config_group(p, "space", SpaceView)
    return run_cli(p, lambda args: show(from_args(SpaceView, args)), argv)


if __name__ == "__main__":
    sys.exit(main())
