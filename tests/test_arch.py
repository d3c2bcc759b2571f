import json
import random

import pytest

from supernet.nn.arch import SCHEMA_VERSION, Architecture
from supernet.nn.space import get_space


def _arch(**kw):
    space = get_space("tiny")
    return Architecture("tiny", space.sample(random.Random(3)), encoder="tiny-bert", task="mrpc", **kw)


def test_json_round_trip(tmp_path):
    arch = _arch(metrics={"f1": 0.81})
    path = arch.save(tmp_path / "sub" / "arch.json")
    again = Architecture.load(path)
    assert again == arch and again.to_dict() == arch.to_dict()
    assert json.loads(path.read_text())["choices"] == dict(arch.choices)
    assert list(tmp_path.joinpath("sub").iterdir()) == [path]  # no temp file left behind


def test_record_is_immutable():
    arch = _arch()
    with pytest.raises(TypeError):
        arch.choices["depth"] = 2
    with pytest.raises(AttributeError):
        arch.space = "paper"


def test_key_ignores_labels_of_unused_layers():
    space = get_space("tiny")
    choices = space.sample(random.Random(0)) | {"depth": 0}
    other = choices | {"width_1": 8 if choices["width_1"] == 16 else 16}
    assert Architecture("tiny", choices).key() == Architecture("tiny", other).key()


@pytest.mark.parametrize("text, message", [
    ("{not json", r"is not valid JSON \(line 1"),
    ("[1, 2]", "must be an object"),
    ('{"model": "resnet50", "lr": 0.1}', "unknown field 'model'"),
    ('{"space": "tiny", "choices": {}}', "no 'schema_version' field"),
    (json.dumps({"schema_version": 99, "space": "tiny", "choices": {}}), "schema_version 99 is not supported"),
    (json.dumps({"schema_version": SCHEMA_VERSION, "space": "nasbench", "choices": {}}), "unknown space 'nasbench'"),
])
def test_bad_json_gets_one_clear_error(tmp_path, text, message):
    path = tmp_path / "arch.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        Architecture.load(path)


def test_value_outside_the_space_names_the_file_and_key(tmp_path):
    d = _arch().to_dict()
    d["choices"]["width_0"] = 4096
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(d))
    with pytest.raises(ValueError, match=r"arch.json: width_0=4096 is outside space 'tiny'"):
        Architecture.load(path)


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="architecture file not found"):
        Architecture.load("/nonexistent/arch.json")


def test_atomic_writes_get_the_usual_file_mode(tmp_path):
    """mkstemp's temp files are 0600; the renamed result must be readable as any new file is."""
    import os

    import torch

    from supernet.core.files import atomic_torch_save, atomic_write_text
    mask = os.umask(0o022)
    try:
        a = atomic_write_text(tmp_path / "a.json", "{}")
        b = atomic_torch_save({"x": 1}, tmp_path / "b.pt")
    finally:
        os.umask(mask)
    assert oct(a.stat().st_mode & 0o777) == oct(b.stat().st_mode & 0o777) == oct(0o644)
    assert torch.load(b)["x"] == 1
