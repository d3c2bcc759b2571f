"""``model.pt``: a trained plain model with its architecture record and tokenizer, saved and loaded
without pretrained files, NNI or the network."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from supernet.core.errors import InputError
from supernet.core.files import atomic_torch_save
from supernet.nn.arch import Architecture
from supernet.nn.model import FrozenModel, TextInterface, build_model

MODEL_FILE = "model.pt"


def save_model(path: Path, model: FrozenModel, arch: Architecture, num_labels: int, source: str | None,
               text_columns: tuple[str, ...], max_length: int) -> None:
    """A trained plain model with everything ``load_model`` needs, the tokenizer's files included:
    no pretrained files, no NNI, no network."""
    import tempfile

    from supernet.nn.encoder import load_tokenizer
    with tempfile.TemporaryDirectory() as d:
        load_tokenizer(source).save_pretrained(d)
        tokenizer_files = {p.name: p.read_bytes() for p in Path(d).iterdir() if p.is_file()}
    atomic_torch_save({"architecture": arch.to_dict(), "num_labels": num_labels, "encoder_source": source,
                       "encoder_config": model.encoder.config.to_dict(), "tokenizer_files": tokenizer_files,
                       "text_columns": list(text_columns), "max_length": max_length,
                       "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}, path)


def read_model_file(path: str | os.PathLike) -> dict[str, Any]:
    """The contents of a ``model.pt`` (or of the one in folder ``path``), or one error naming the file."""
    path = Path(path).expanduser()
    if path.is_dir():
        if not (path / MODEL_FILE).is_file():
            raise InputError(f"{path} is a folder without a {MODEL_FILE}; give a retrained head's folder or its "
                             f"{MODEL_FILE}")
        path = path / MODEL_FILE
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise InputError(f"{path}: no such model file") from None
    except Exception as e:
        raise InputError(f"{path} is not a saved retrain model (corrupt or truncated: {type(e).__name__}); "
                         "retrain again or use another model.pt") from None
    if isinstance(state, dict) and "optimizer" in state and "architecture" not in state:
        raise InputError(f"{path} is a training checkpoint, not a saved model: give the {MODEL_FILE} that "
                         "python -m retrain writes")
    if not isinstance(state, dict) or "architecture" not in state:
        raise InputError(f"{path} is not a saved retrain model (no architecture record); give a {MODEL_FILE}")
    return state


def load_model(path: str | os.PathLike) -> FrozenModel:
    """One call from a saved ``model.pt`` to a ready plain model (eval mode; no NNI involved)."""
    from transformers import AutoConfig, AutoModel
    state = read_model_file(path)
    arch = Architecture.from_dict(state["architecture"])
    config_dict = dict(state["encoder_config"])
    config = AutoConfig.for_model(config_dict.pop("model_type"), **config_dict)
    model = build_model(arch, AutoModel.from_config(config), state["num_labels"])
    model.load_state_dict(state["state_dict"])
    model.interface = _interface(state, arch)
    return model.eval()


def _interface(state: dict[str, Any], arch: Architecture) -> TextInterface:
    import tempfile

    from transformers import AutoTokenizer

    from supernet.nn.encoder import load_tokenizer
    if "tokenizer_files" in state:
        with tempfile.TemporaryDirectory() as d:
            for name, data in state["tokenizer_files"].items():
                (Path(d) / name).write_bytes(data)
            tokenizer = AutoTokenizer.from_pretrained(d)
    else:  # saved before tokenizers were kept in the file
        tokenizer = load_tokenizer(state["encoder_source"])
    return TextInterface(tokenizer, tuple(state.get("text_columns", ())), state.get("max_length", 128), arch.labels,
                         state["num_labels"] == 1)
