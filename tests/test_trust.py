"""Nothing is deleted or mixed up by accident, and errors tell the truth (issue #16)."""
from __future__ import annotations

import errno
import json
import os
import time

import pytest
import torch

from supernet.core.cli import run_cli
from supernet.core.errors import InputError
from supernet.core.files import MARKER, claim_output_dir
from supernet.nn.arch import Architecture
from supernet.nn.space import get_space
from supernet.search import main as search_main

TINY_SEARCH = ["--task", "mrpc", "--num-hidden-layers", "2", "--space", "tiny", "--max-train-samples", "64",
               "--max-eval-samples", "32", "--max-steps", "2", "--batch-size", "16", "--calib-samples", "16",
               "--random-baseline", "4", "--trials", "3", "--population", "2", "--sample-size", "1", "--no-webui",
               "--pick", "best"]


def _snapshot(folder):
    return {p.relative_to(folder): (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.rglob("*") if p.is_file()}


# ------------------------------------------------------------------ --overwrite deletes only our own runs

def test_overwrite_refuses_a_folder_with_a_foreign_file(tmp_path, glue_dir, capsys):
    out = tmp_path / "thesis"
    out.mkdir()
    (out / "chapter1.tex").write_text("years of work")
    code = search_main([*TINY_SEARCH, "--glue-dir", str(glue_dir), "--output-dir", str(out), "--overwrite"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and f"--overwrite refuses to delete {out}" in err
    assert (out / "chapter1.tex").read_text() == "years of work" and len(list(out.iterdir())) == 1


def test_overwrite_refuses_the_current_directory(tmp_path, monkeypatch):
    (tmp_path / "src.py").write_text("x = 1")
    (tmp_path / MARKER).write_text("{}")  # even one that looks like a run
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match="current directory"):
        claim_output_dir(tmp_path / ".", True, "a run", "")
    with pytest.raises(InputError, match="current directory"):
        claim_output_dir(tmp_path.parent, True, "a run", "")
    assert (tmp_path / "src.py").is_file()


def test_overwrite_refuses_logs_which_holds_many_runs(tmp_path):
    logs = tmp_path / "logs"
    for name in ("mrpc-evolution-1", "mrpc-evolution-2"):
        claim_output_dir(logs / name, False, "a run", "")
    before = _snapshot(logs)
    with pytest.raises(InputError, match=f"holds no {MARKER}"):
        claim_output_dir(logs, True, "a run", "")
    assert _snapshot(logs) == before


def test_overwrite_replaces_a_run_directory(tmp_path):
    run = claim_output_dir(tmp_path / "run", False, "a run", "")
    (run / "checkpoint.pt").write_text("old")
    with pytest.raises(InputError, match="already holds a run"):
        claim_output_dir(run, False, "a run", "--resume continues it")
    claim_output_dir(run, True, "a run", "")
    assert not (run / "checkpoint.pt").exists() and (run / MARKER).is_file()


# ------------------------------------------------------------------ --resume never mixes settings

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, glue_dir):
    run = tmp_path_factory.mktemp("search") / "run"
    assert search_main([*TINY_SEARCH, "--glue-dir", str(glue_dir), "--output-dir", str(run)]) == 0
    return run


def test_search_resume_with_other_settings_is_refused_and_touches_nothing(tiny_run, capsys):
    before = _snapshot(tiny_run)
    assert search_main(["--resume", str(tiny_run), "--epochs", "3", "--lr-head", "0.01", "--no-webui"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--epochs 1.0 -> 3.0" in err and "--lr-head 0.001 -> 0.01" in err
    assert _snapshot(tiny_run) == before


def test_search_resume_of_a_run_config_without_search_settings_is_one_line(tiny_run, tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    config = json.loads((tiny_run / "run_config.json").read_text())
    del config["search"]
    (broken / "run_config.json").write_text(json.dumps(config))
    assert search_main(["--resume", str(broken)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "has no 'search' settings" in err


def test_retrain_resume_with_another_architecture_is_refused(tmp_path, glue_dir, capsys):
    from retrain.cli import main as retrain_main
    space = get_space("tiny")
    archs = []
    for i, depth in enumerate((0, 1)):  # two searches' arch_top1.json: same file name, other heads
        path = tmp_path / f"search{i}" / "arch_top1.json"
        path.parent.mkdir()
        Architecture("tiny", space.canonical({**space.reference(), "depth": depth}), task="mrpc").save(path)
        archs.append(path)
    common = ["--glue-dir", str(glue_dir), "--num-hidden-layers", "2", "--max-train-samples", "32",
              "--max-eval-samples", "16", "--max-steps", "1", "--batch-size", "16", "--seeds", "1",
              "--output-dir", str(tmp_path / "out")]
    assert retrain_main([str(archs[0]), *common]) == 0
    before = _snapshot(tmp_path / "out")
    capsys.readouterr()
    assert retrain_main([str(archs[1]), *common, "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "trained with other settings" in err and "architecture.choices" in err
    assert _snapshot(tmp_path / "out") == before
    assert retrain_main([str(archs[0]), *common, "--resume"]) == 0  # the same settings: kept as they are


def test_bohb_study_with_other_settings_is_refused(tmp_path):
    import optuna

    from retrain.bohb import check_study_settings
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'study.db'}", study_name="bohb")
    check_study_settings(study, {"fine_tune.epochs": 3.0, "bohb.rung_epochs": 1.0}, tmp_path)
    check_study_settings(study, {"fine_tune.epochs": 3.0, "bohb.rung_epochs": 1.0}, tmp_path)  # same: fine
    with pytest.raises(InputError, match=r"fine_tune.epochs: 3.0 -> 10.0"):
        check_study_settings(study, {"fine_tune.epochs": 10.0, "bohb.rung_epochs": 1.0}, tmp_path)


def test_compare_resume_refuses_a_search_of_another_space(tmp_path, tiny_run):
    from retrain.comparison import weight_sharing_search
    from strategies.pipeline import SearchJob
    stored = SearchJob.load(tiny_run)
    other = stored.__class__(**{**stored.__dict__, "train": stored.train.__class__(
        **{**stored.train.__dict__, "space": "small"})})
    with pytest.raises(InputError, match="--space tiny -> small"):
        weight_sharing_search(other, tiny_run)


def test_compare_refuses_a_backbone_space_before_anything_runs(tmp_path, glue_dir, capsys):
    from retrain.compare import main as compare_main
    out = tmp_path / "cmp"
    assert compare_main(["--task", "mrpc", "--glue-dir", str(glue_dir), "--space", "small+ffn", "--output-dir",
                         str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "BO-Hyperband baseline searches head choices only" in err
    assert not out.exists()


# ------------------------------------------------------------------ costs survive a resume

def test_loop_cost_adds_up_over_a_killed_and_resumed_run(tmp_path):
    """Wall and CPU seconds before a kill are kept in the checkpoint and added to the resumed run's."""
    from supernet.train.loop import FineTuneConfig, Loop, make_optimizer, resume_progress
    model = torch.nn.ModuleDict({"encoder": torch.nn.Linear(4, 4), "head": torch.nn.Linear(4, 1)})
    cfg = FineTuneConfig(max_steps=6)

    def busy_step(step):
        t = time.process_time()
        while time.process_time() - t < 0.05:  # 50 ms of CPU per step
            pass
        return model["head"](model["encoder"](torch.ones(2, 4))).sum()

    def run(die_at=None):
        opt, sched = make_optimizer(model, cfg, 6)
        progress = resume_progress(tmp_path / "ckpt.pt", model, opt, sched)
        loop = Loop(model, opt, sched, 6, 1.0, "test", checkpoint=tmp_path / "ckpt.pt", checkpoint_every=2)

        def step(s):
            if s == die_at:
                raise KeyboardInterrupt
            return busy_step(s)
        return loop.run(step, progress)
    with pytest.raises(KeyboardInterrupt):
        run(die_at=4)  # killed after the step-4 checkpoint: 4 steps spent
    progress = run()
    assert progress.resumed_from == 4 and progress.step == 6
    assert progress.cpu_seconds >= 6 * 0.05 * 0.95  # all six steps, not only the two after the resume
    assert progress.seconds >= progress.cpu_seconds * 0.5


# ------------------------------------------------------------------ errors that tell the truth

def _cli(exc):
    import argparse

    def run(args):
        raise exc
    return run_cli(argparse.ArgumentParser(), run, [])


def test_input_errors_are_one_line_exit_2(capsys):
    assert _cli(InputError("--epochs must be > 0")) == 2
    assert capsys.readouterr().err == "error: --epochs must be > 0\n"


def test_a_file_that_cannot_be_written_is_one_line_naming_it(capsys):
    assert _cli(PermissionError(errno.EACCES, "Permission denied", "/data/run/checkpoint.pt")) == 1
    assert capsys.readouterr().err == "error: cannot write /data/run/checkpoint.pt: Permission denied\n"
    assert _cli(OSError(errno.ENOSPC, "No space left on device", "/data/x")) == 1


@pytest.mark.parametrize("bug", [KeyError("search"), TypeError("unsupported operand"), RuntimeError("internal"),
                                 FileNotFoundError(errno.ENOENT, "No such file", "/internal/path")])
def test_anything_unexpected_keeps_its_traceback(bug):
    with pytest.raises(type(bug)):
        _cli(bug)


def test_file_errors_name_the_path_in_a_real_command(tmp_path, glue_dir, capsys):
    """A run directory under a path that is a file (the OS refuses) is one line naming the path."""
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    code = search_main([*TINY_SEARCH, "--glue-dir", str(glue_dir), "--output-dir", str(blocker / "run")])
    err = capsys.readouterr().err.strip()
    assert code in (1, 2) and len(err.splitlines()) == 1 and str(blocker) in err, err
    assert os.path.isfile(blocker)
