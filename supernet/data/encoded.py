"""Token ids of a split, tokenised once and cached on disk, batched with dynamic padding."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from supernet.core.files import atomic_torch_save
from supernet.data.readers import TextSplit


@dataclass(frozen=True)
class Encoded:
    """Token ids of one split, unpadded, plus labels. A split of sentence pairs also holds each text
    tokenised alone (``sides``), for heads that encode the two apart (siamese, cosine)."""

    input_ids: list[np.ndarray]
    token_type_ids: list[np.ndarray]
    labels: np.ndarray
    sides: tuple["Encoded", "Encoded"] | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(x) for x in self.input_ids), np.int64, len(self.input_ids))

    def subset(self, rows) -> "Encoded":
        rows = np.asarray(rows, np.int64)
        sides = None if self.sides is None else (self.sides[0].subset(rows), self.sides[1].subset(rows))
        return Encoded([self.input_ids[i] for i in rows], [self.token_type_ids[i] for i in rows], self.labels[rows],
                       sides)

    def fingerprint(self) -> str:
        """A short hash of the rows (token ids and labels): what a resumed run checks its data against."""
        h = hashlib.sha1()
        for ids in self.input_ids:
            h.update(np.asarray(ids, np.int64).tobytes())
            h.update(b"|")
        h.update(np.asarray(self.labels).tobytes())
        return h.hexdigest()[:16]

    def head(self, n: int) -> "Encoded":
        return self.subset(np.arange(min(n, len(self))))


def _cache_key(split: TextSplit, tokenizer, max_length: int) -> str:
    h = hashlib.sha1()
    h.update(f"{type(tokenizer).__name__}|{tokenizer.name_or_path}|{len(tokenizer)}|{max_length}".encode())
    for col in split.texts:
        for text in col:
            h.update(text.encode("utf-8", "surrogatepass"))
            h.update(b"\0")
    h.update(split.labels.tobytes())
    return h.hexdigest()


def _tokenise(columns: list[list[str]], tokenizer, max_length: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    enc = tokenizer(*columns, truncation=True, max_length=max_length)
    ids = [np.asarray(x, np.int32) for x in enc["input_ids"]]
    return ids, [np.asarray(x, np.int8) for x in enc.get("token_type_ids", [[0] * len(x) for x in ids])]


def encode(split: TextSplit, tokenizer, max_length: int, cache_dir: str | None = None) -> Encoded:
    """Tokenise a split once (a pair jointly, and each of its texts alone); later calls with the same
    text and tokenizer read the cache."""
    path = None
    if cache_dir:
        path = Path(cache_dir) / f"tok-{_cache_key(split, tokenizer, max_length)}.pt"
        if path.is_file():
            try:
                stored = torch.load(path, weights_only=False)
                if len(split.texts) < 2 or stored.get("sides"):  # an entry written before sides is rebuilt
                    return _from_stored(stored)
            except Exception:  # a corrupt cache entry is rebuilt, never trusted
                path.unlink(missing_ok=True)
    stored = {"input_ids": None, "token_type_ids": None, "labels": split.labels, "sides": None}
    stored["input_ids"], stored["token_type_ids"] = _tokenise([list(c) for c in split.texts], tokenizer, max_length)
    if len(split.texts) == 2:
        stored["sides"] = [_tokenise([list(c)], tokenizer, max_length) for c in split.texts]
    if path is not None:  # atomic: a killed run never leaves a half-written cache file
        atomic_torch_save(stored, path)
    return _from_stored(stored)


def _from_stored(stored: dict) -> Encoded:
    labels = stored["labels"]
    sides = stored.get("sides")
    return Encoded(stored["input_ids"], stored["token_type_ids"], labels,
                   tuple(Encoded(ids, types, labels) for ids, types in sides) if sides else None)


def pad_batch(data: Encoded, index: np.ndarray, pad_id: int, sides: bool = False) -> dict[str, torch.Tensor]:
    """Pad the rows in ``index`` to the longest of them (dynamic padding). ``sides``: a pair's texts
    tokenised alone too, under ``a_input_ids``, ``b_attention_mask``, ... (each padded on its own)."""
    out = _pad(data, index, pad_id)
    if sides:
        if data.sides is None:
            raise ValueError("siamese and cosine heads read two text columns; this split has one")
        for side, part in zip("ab", data.sides):
            out.update({f"{side}_{k}": v for k, v in _pad(part, index, pad_id).items() if k != "labels"})
    return out


def _pad(data: Encoded, index: np.ndarray, pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(data.input_ids[i]) for i in index)
    input_ids = np.full((len(index), width), pad_id, np.int64)
    types = np.zeros((len(index), width), np.int64)
    mask = np.zeros((len(index), width), np.int64)
    for row, i in enumerate(index):
        n = len(data.input_ids[i])
        input_ids[row, :n] = data.input_ids[i]
        types[row, :n] = data.token_type_ids[i]
        mask[row, :n] = 1
    return {"input_ids": torch.from_numpy(input_ids), "token_type_ids": torch.from_numpy(types),
            "attention_mask": torch.from_numpy(mask), "labels": torch.from_numpy(data.labels[index])}


def batch_indices(data: Encoded, batch_size: int, shuffle: bool, seed: int = 0,
                  bucket: bool = True) -> list[np.ndarray]:
    """Batches of row indices. With ``bucket``, rows of similar length share a batch (less padding);
    shuffling then permutes within 50-batch chunks and the order of batches, so it stays random."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data)) if shuffle else np.arange(len(data))
    if bucket:
        chunk = batch_size * 50
        lengths = data.lengths
        order = np.concatenate([c[np.argsort(lengths[c], kind="stable")]
                                for c in np.array_split(order, max(1, -(-len(order) // chunk)))])
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if shuffle:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def iterate(data: Encoded, batch_size: int, pad_id: int, shuffle: bool = False, seed: int = 0,
            bucket: bool = True) -> Iterator[dict[str, torch.Tensor]]:
    for index in batch_indices(data, batch_size, shuffle, seed, bucket):
        yield pad_batch(data, index, pad_id)
