"""The one architecture record: a frozen dataclass <-> JSON, choices keyed by NNI label."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from supernet.core.errors import InputError, MissingInput
from supernet.core.files import atomic_write_text
from supernet.nn.space import LINEAR_HEAD, V1_PRESETS, SearchSpace, get_space

SCHEMA_VERSION = 2  # 2: adds ``labels``
_FIELDS = ("schema_version", "space", "encoder", "task", "labels", "choices", "metrics", "pick")
_V1_FIELDS = ("schema_version", "space", "encoder", "task", "choices", "metrics")


@dataclass(frozen=True)
class Architecture:
    """A head architecture in a named space. ``choices`` keys are the NNI labels of the space."""

    space: str
    choices: Mapping[str, Any]
    encoder: str = ""
    task: str = ""
    metrics: Mapping[str, float] = field(default_factory=dict)
    labels: tuple[str, ...] | None = None  # class names of a task whose labels are names (class i = labels[i])
    schema_version: int = SCHEMA_VERSION
    pick: Mapping[str, Any] | None = None  # how a search chose it (strategies.pick): rule, head, one line

    def __post_init__(self):
        if self.schema_version != SCHEMA_VERSION:
            raise InputError(f"architecture schema_version {self.schema_version!r} is not supported "
                             f"(this version reads {SCHEMA_VERSION} and 1)")
        choices = get_space(self.space).validate(self.choices)
        object.__setattr__(self, "choices", MappingProxyType(choices))
        object.__setattr__(self, "metrics", MappingProxyType(dict(self.metrics)))
        if self.labels is not None:
            if not isinstance(self.labels, (list, tuple)) or not all(isinstance(x, str) for x in self.labels):
                raise InputError(f"architecture labels must be a list of class names, got {self.labels!r}")
            object.__setattr__(self, "labels", tuple(self.labels))

    @property
    def search_space(self) -> SearchSpace:
        return get_space(self.space)

    def key(self) -> tuple:
        """Hashable identity of the model (unused deeper labels ignored)."""
        return tuple(sorted(self.search_space.canonical(self.choices).items()))

    def with_metrics(self, **metrics: float) -> "Architecture":
        return replace(self, metrics={**self.metrics, **metrics})

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": self.schema_version, "space": self.space, "encoder": self.encoder,
                "task": self.task, "labels": list(self.labels) if self.labels is not None else None,
                "choices": dict(self.choices), "metrics": dict(self.metrics),
                **({"pick": dict(self.pick)} if self.pick else {})}

    @classmethod
    def from_dict(cls, d: Any) -> "Architecture":
        if not isinstance(d, dict):
            raise InputError(f"an architecture JSON must be an object, got {type(d).__name__}")
        fields = _V1_FIELDS if d.get("schema_version") == 1 else _FIELDS
        unknown = [k for k in d if k not in fields]
        if unknown:
            raise InputError(f"unknown field {unknown[0]!r} in architecture JSON; fields: {list(fields)}")
        for key in ("schema_version", "space", "choices"):
            if key not in d:
                raise InputError(f"architecture JSON has no {key!r} field (is it an architecture file?)")
        if d["schema_version"] == 1:
            d = _from_v1(d)
        return cls(space=d["space"], choices=d["choices"], encoder=d.get("encoder", ""), task=d.get("task", ""),
                   metrics=d.get("metrics") or {}, labels=d.get("labels"), schema_version=d["schema_version"],
                   pick=d.get("pick"))

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically (temp file + rename): an interrupted save never leaves half a file."""
        return atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Architecture":
        path = Path(path)
        if not path.is_file():
            raise MissingInput(f"architecture file not found: {path}")
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise InputError(f"{path} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
        except UnicodeDecodeError:
            raise InputError(f"{path} is not UTF-8 text") from None
        try:
            return cls.from_dict(d)
        except (ValueError, TypeError) as e:
            raise InputError(f"{path}: {e}") from None


def _from_v1(d: dict[str, Any]) -> dict[str, Any]:
    """A schema-1 record as schema 2, the same model: schema 1 had no class names, and its "paper"
    and "tiny" spaces had no token blocks (they are "mlp" and "tiny-mlp" now)."""
    if not isinstance(d["space"], str):
        return {**d, "schema_version": SCHEMA_VERSION}
    base, at, depth = d["space"].partition("@")
    head, *parts = base.split("+")
    space = "+".join([V1_PRESETS.get(head, head), *parts]) + at + depth
    return {**d, "space": space, "schema_version": SCHEMA_VERSION, "labels": None}


def linear_architecture(task: str, encoder: str, labels: tuple[str, ...] | None = None,
                        pool: str = LINEAR_HEAD["pool"]) -> Architecture:
    """The standard baseline head (``LINEAR_HEAD``: one linear layer on the pooler's [CLS]) as a record
    of the ``paper`` space; ``pool="mean"`` gives the sentence-transformers convention instead."""
    space = get_space("paper")
    return Architecture("paper", space.canonical({**space.reference(), **LINEAR_HEAD, "pool": pool}), encoder=encoder,
                        task=task, labels=labels)