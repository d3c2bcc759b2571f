"""Shared fixtures: the real data beside the project, the packaged tokenizer, tiny encoders."""
from __future__ import annotations

import os
import random
import warnings
from pathlib import Path

import pytest
import torch

warnings.filterwarnings("ignore", message=".*is found to be not a nn.Module.*")

ROOT = Path(__file__).resolve().parents[1]
GLUE_DIR = Path(os.environ.get("GLUE_DIR") or ROOT.parent / "shared" / "data" / "glue").resolve()


@pytest.fixture(scope="session")
def glue_dir() -> Path:
    # Not a skip: CI always has ../shared beside the clone, and a missing folder is a failure.
    assert GLUE_DIR.is_dir(), f"real GLUE data not found at {GLUE_DIR} (set GLUE_DIR)"
    return GLUE_DIR


@pytest.fixture(scope="session")
def tokenizer():
    from supernet.nn.encoder import load_tokenizer
    return load_tokenizer(None)


@pytest.fixture()
def tiny_encoder():
    from supernet.nn.encoder import tiny_encoder
    return tiny_encoder()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A model directory as a user gives --model: a tiny random BERT with the packaged tokenizer."""
    from supernet.nn.encoder import load_tokenizer, tiny_encoder
    d = tmp_path_factory.mktemp("tiny-bert")
    tiny_encoder().save_pretrained(d)
    load_tokenizer(None).save_pretrained(d)
    return d


@pytest.fixture(autouse=True)
def _seed():
    random.seed(0)
    torch.manual_seed(0)


def make_batch(batch_size: int = 4, length: int = 9, vocab: int = 1000, seed: int = 0) -> dict[str, torch.Tensor]:
    """Token batch with ragged padding (the last rows are shorter)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 1000 + vocab, (batch_size, length), generator=g)
    mask = torch.ones(batch_size, length, dtype=torch.long)
    for row in range(batch_size):
        mask[row, length - row:] = 0
    return {"input_ids": ids * mask, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
