"""Typed configs are the one source of every command-line flag.

A config is a frozen dataclass whose fields are declared with ``arg(default, help, ...)``: the
flag's name, type, default, choices and help are read from the field, so each is written once.
``add_arguments`` turns a config class into argparse flags, ``from_args`` builds the config back
from the parsed namespace, and ``Config.to_dict`` / ``from_dict`` are what run directories store.
Validation stays in each class's ``__post_init__``, with messages that name the flag.
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any

from supernet.core.errors import InputError

_UNSET = object()


def arg(default: Any, help: str, *, choices: tuple | None = None, flag: str | None = None,
        metavar: str | None = None, cli: bool = True, aliases: tuple[str, ...] = ()) -> Any:
    """A config field that is also a flag (``--field-name`` unless ``flag`` says otherwise; ``aliases``:
    older spellings still accepted). ``cli=False``: stored and validated like the others, but set by
    code, not by a flag."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices, "flag": flag,
                                                        "metavar": metavar, "cli": cli, "aliases": aliases})


def _base_type(hint) -> tuple[type, bool]:
    """(element type, is a tuple) of a field's annotation: ``int | None`` -> (int, False),
    ``tuple[int, ...]`` -> (int, True)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
        origin = typing.get_origin(hint)
    if origin is tuple:
        return typing.get_args(hint)[0], True
    return hint, False


def _parse_list(kind: type):
    def parse(text: str) -> tuple:
        try:
            return tuple(kind(s.strip()) for s in text.split(",") if s.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {kind.__name__} values, got {text!r}") from None
    parse.__name__ = f"comma-separated {kind.__name__}"
    return parse


def _show(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def flag_of(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def cli_fields(cls) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.metadata.get("cli")]


def add_arguments(container, cls, defaults: dict[str, Any] | None = None) -> None:
    """The flags of config class ``cls``. A flag another config already added is shared, not repeated
    (e.g. ``--seed``), so both configs read the same value. ``defaults``: a command's own defaults
    (e.g. retrain takes the task from the architecture record unless ``--task`` is given)."""
    hints = typing.get_type_hints(cls)
    taken = {a.dest for a in container._actions}
    for f in cli_fields(cls):
        if f.name in taken:
            continue
        meta, kind = f.metadata, _base_type(hints[f.name])
        default = (defaults or {}).get(f.name, f.default)
        help_text = meta["help"] + ("" if default in (None, "", False, True) else f" (default: {_show(default)})")
        kwargs: dict[str, Any] = {"dest": f.name, "default": default, "help": help_text}
        if kind[0] is bool and not kind[1]:
            kwargs["action"] = "store_false" if default else "store_true"
        else:
            kwargs["type"] = _parse_list(kind[0]) if kind[1] else kind[0]
            if meta["choices"]:
                kwargs["choices"] = meta["choices"]
            if meta["metavar"]:
                kwargs["metavar"] = meta["metavar"]
        container.add_argument(flag_of(f), *meta.get("aliases", ()), **kwargs)


def from_args(cls, args: argparse.Namespace, **overrides):
    """The config of class ``cls`` from parsed flags (fields without a flag keep their default)."""
    values = {f.name: getattr(args, f.name) for f in cli_fields(cls) if hasattr(args, f.name)}
    return cls(**{**values, **overrides})


def explicit_dests(parser: argparse.ArgumentParser, argv: list[str] | None) -> set[str]:
    """The dests the user gave on the command line (argparse fills a default only where the
    namespace has none, so a namespace pre-filled with a sentinel tells them apart)."""
    namespace = argparse.Namespace(**{a.dest: _UNSET for a in parser._actions if a.dest != "help"})
    parsed = parser.parse_args(argv, namespace=namespace)
    return {k for k, v in vars(parsed).items() if v is not _UNSET}


class Config:
    """Mixin of every typed config: what a run directory stores and reads back."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
                for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: Any, where: str = "config"):
        """The config stored as ``d``; one error naming an unknown key (lists become tuples again)."""
        if not isinstance(d, dict):
            raise InputError(f"{where}: expected an object of settings, got {type(d).__name__}")
        hints = typing.get_type_hints(cls)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError(f"{where}: unknown setting {unknown[0]!r} (this version knows {sorted(known)})")
        return cls(**{k: tuple(v) if isinstance(v, list) and _base_type(hints[k])[1] else v for k, v in d.items()})

    def differences(self, other: "Config", ignore: tuple[str, ...] = ()) -> list[str]:
        """``--flag mine -> other's`` for every field (but ``ignore``) whose value differs."""
        return [f"{flag_of(f)} {_show(getattr(self, f.name))} -> {_show(getattr(other, f.name))}"
                for f in dataclasses.fields(self)
                if f.name not in ignore and getattr(self, f.name) != getattr(other, f.name)]