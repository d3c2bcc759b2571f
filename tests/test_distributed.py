"""Data-parallel supernet training on CPU: 2 processes, gloo, a tiny BERT, real MRPC rows."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
import torch.multiprocessing as mp

from supernet.nn.arch import Architecture

from conftest import ROOT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str, model_dir: str, glue_dir: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    import torch.distributed as dist

    import supernet.train.supernet as T
    from supernet.core import distributed
    from supernet.data.encoded import encode
    from supernet.data.sources import TRAIN, DataConfig, load_splits
    from supernet.nn.encoder import load_encoder, load_tokenizer
    from supernet.nn.space import get_space
    from supernet.nn.supernet import HeadSupernet

    distributed.init_from_env("cpu")
    seen, rows, forward = [], [], T.StepLoss.forward

    def recording(self, batch, archs):
        seen.append([json.dumps(a, sort_keys=True) for a in archs])
        rows.append(len(batch["labels"]))
        return forward(self, batch, archs)
    T.StepLoss.forward = recording
    cfg = DataConfig(task="mrpc", glue_dir=glue_dir, max_train_samples=64, max_eval_samples=16)
    spec, splits = load_splits(cfg)
    tok = load_tokenizer(model_dir)
    train, dev = (encode(splits[s], tok, cfg.max_length, cfg.cache_dir) for s in (TRAIN, "validation"))
    torch.manual_seed(rank)  # different initial weights per rank: DDP must broadcast rank 0's
    net = HeadSupernet(load_encoder(model_dir), get_space("tiny"), spec.num_labels)
    T.train_supernet(net, spec, train, dev, tok.pad_token_id, T.TrainConfig(
        max_steps=5, batch_size=8, heads_per_step=2, checkpoint_every=100, eval_every=100), Path(out))
    torch.save({"archs": seen, "rows": rows, "state": net.state_dict()}, Path(out) / f"rank{rank}.pt")
    dist.destroy_process_group()


def test_two_ranks_sample_the_same_heads_and_end_identical(tmp_path, tiny_model_dir, glue_dir):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path), str(tiny_model_dir), str(glue_dir)), nprocs=2)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert len(r0["archs"]) == 5 and r0["archs"] == r1["archs"]
    assert r0["rows"] == r1["rows"] == [4] * 5  # each rank half of every global batch of 8
    assert all(torch.equal(r0["state"][k], r1["state"][k]) for k in r0["state"])
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=False)  # written by rank 0 alone
    assert ckpt["step"] == 5 and all(torch.equal(ckpt["model"][k], r0["state"][k]) for k in ckpt["model"])
    assert sorted(p.name for p in tmp_path.glob("rank*.pt")) == ["rank0.pt", "rank1.pt"]


def test_search_under_torchrun(tmp_path, tiny_model_dir, glue_dir):
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                        "--master_port", str(_free_port()), "-m", "supernet.search",
                        "--task", "mrpc", "--glue-dir", str(glue_dir), "--model", str(tiny_model_dir),
                        "--space", "tiny", "--max-train-samples", "64", "--max-eval-samples", "32",
                        "--batch-size", "8", "--max-steps", "4", "--calib-samples", "16", "--no-webui",
                        "--trials", "6", "--population", "3", "--sample-size", "2", "--random-baseline", "2",
                        "--pick", "best", "--output-dir", str(run)], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("run directory:") == 1 and "(2 processes)" in r.stdout  # rank 0 speaks
    assert json.loads((run / "search_summary.json").read_text())["trials"] == 6
    Architecture.load(run / "arch_top1.json")


def test_retrain_under_torchrun(tmp_path, tiny_model_dir, glue_dir):
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                        "--master_port", str(_free_port()), "-m", "retrain", "linear", "--task", "mrpc",
                        "--glue-dir", str(glue_dir), "--model", str(tiny_model_dir), "--max-train-samples", "64",
                        "--max-eval-samples", "32", "--batch-size", "8", "--max-steps", "6", "--checkpoint-every", "2",
                        "--seeds", "1,2", "--output-dir", str(out)], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("output directory:") == 1
    results = json.loads((out / "results.json").read_text())
    assert sorted(results["heads"]["linear"]["seeds"]) == ["1", "2"]
    assert not list(out.rglob("checkpoint.pt"))  # finished seeds keep no checkpoint
    from supernet.nn.saved import load_model
    load_model(out / "linear" / "model.pt")


def test_compare_refuses_torchrun(monkeypatch, capsys):
    from retrain.compare import main as compare_main
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert compare_main(["--task", "mrpc"]) == 2
    assert "runs in one process" in capsys.readouterr().err
