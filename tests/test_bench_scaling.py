"""bench/gpu_scaling.py's projection arithmetic (the numbers in bench/RESULTS.md's H100 section come from it)."""
import importlib.util
import json
import math

import pytest

from conftest import ROOT

_spec = importlib.util.spec_from_file_location("gpu_scaling", ROOT / "bench" / "gpu_scaling.py")
gpu_scaling = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu_scaling)


def test_ring_allreduce_estimate():
    assert gpu_scaling.allreduce_s(10**9, 1, 100) == 0.0
    # 2 (N-1)/N of 4 GB at 100 GB/s
    assert gpu_scaling.allreduce_s(10**9, 2, 100) == pytest.approx(0.04)
    assert gpu_scaling.allreduce_s(10**9, 8, 100) == pytest.approx(2 * 7 / 8 * 0.04)


def test_phase_minutes_from_measured_rates():
    rates = {32: 320.0, 16: 160.0}  # 0.1 s a step at either batch: launch-bound
    lo, hi = gpu_scaling.phase_minutes(rates, 25 * 10**6, rows=3200, epochs=1, gpus=1, global_batch=32, busbw=100)
    assert lo == hi == pytest.approx(100 * 0.1 / 60)
    comm = gpu_scaling.allreduce_s(25 * 10**6, 2, 100)  # 0.001 s
    lo, hi = gpu_scaling.phase_minutes(rates, 25 * 10**6, rows=3200, epochs=1, gpus=2, global_batch=32, busbw=100)
    assert (lo, hi) == (pytest.approx(100 * 0.1 / 60), pytest.approx(100 * (0.1 + comm) / 60))
    lo, _ = gpu_scaling.phase_minutes(rates, 25 * 10**6, rows=3200, epochs=1, gpus=2, global_batch=64, busbw=100)
    assert lo == pytest.approx(50 * 0.1 / 60)  # per-GPU 32: half the steps
    assert all(math.isnan(x) for x in gpu_scaling.phase_minutes(rates, 1, 3200, 1, 4, 32, 100))  # batch 8 unmeasured


def test_table_merges_runs_and_prints_every_projection(tmp_path, capsys):
    task = {"train_rows": 3668, "dev_rows": 408, "num_labels": 2, "mean_tokens": 50.0, "encoder_params": 10**8,
            "head_supernet_params": 10**6, "features_seq_per_s": 1000.0, "scoring_per_minute": 6000.0}
    setup = {"encoder": "bert-base", "device_name": "GPU", "precision": "bf16", "torch": "x", "date": "d"}
    a = {"setup": setup, "tasks": {"mrpc": {**task, "plain_seq_per_s": {"32": 640.0, "16": 320.0},
                                            "supernet_seq_per_s": {"32": 320.0, "16": 160.0}}}}
    b = {"setup": setup, "tasks": {"mrpc": {**task, "plain_seq_per_s": {"8": 160.0}, "supernet_seq_per_s": {"8": 80.0}}}}
    files = []
    for i, run in enumerate((a, b)):
        files.append(tmp_path / f"{i}.json")
        files[-1].write_text(json.dumps(run))
    gpu_scaling.main(["table", *map(str, files), "--gpus", "1,2,4", "--epochs", "1", "--trials", "600"])
    out = capsys.readouterr().out
    # mrpc supernet, 1 GPU: 3668 rows / 320 seq/s = 11.5 s = 0.2 min; 4 GPUs at global batch 32 uses the batch-8 run
    assert "| mrpc (3,668) | supernet | 0.2 |" in out and "n/a" not in out.split("per-GPU batch 32")[0]
    assert "| mnli (392,702) at mrpc's speed | supernet |" in out
    assert "| mrpc | 408 | 0.4 | 6.0 |" in out  # 408 / 1000 s; 600 candidates at 6000 / min
