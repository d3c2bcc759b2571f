"""NNI training-service configs for remote trials: checked with NNI's classes, without connecting."""
from __future__ import annotations

import re

import pytest

from strategies.cluster import check_training_service
from supernet.search import main as search_main


def write(path, text):
    path.write_text(text)
    return path


@pytest.fixture()
def key(tmp_path):
    return write(tmp_path / "id_rsa", "not a real key; NNI only checks that the file exists")


def test_remote_config_is_accepted(tmp_path, key):
    f = write(tmp_path / "cluster.yml", f"""nniManagerIp: 10.0.0.1
trainingService:
  platform: remote
  machineList:
    - host: 10.0.0.2
      user: alice
      sshKeyFile: {key}
      pythonPath: /opt/venv/bin
""")
    assert check_training_service(f) == "remote"


@pytest.mark.parametrize("body, message", [
    ("trainingService:\n  platform: remote\n  machineList:\n    - user: a\n      sshKeyFile: {key}\n",
     "host is not set"),
    ("trainingService:\n  platform: remote\n  machineList:\n    - host: h\n      user: a\n"
     "      sshKeyFile: /nonexistent/key\n", "valid SSH key file"),
    ("trainingService:\n  platform: remote\n  machinList: []\n", "does not have field"),
    ("trainingService:\n  platform: marsnet\n", "unknown platform 'marsnet'"),
    ("trainingService:\n  platform: local\n", "platform 'local' is the default"),
    ("[1, 2]\n", "expected a mapping with a 'trainingService' section"),
    ("platform: remote\n", "unknown key 'platform'"),
    ("trainingService:\n  platform: remote\nnniManagerPort: 3\n", "unknown key 'nniManagerPort'"),
    ("trainingService: [unclosed\n", "is not valid YAML"),
])
def test_bad_remote_config_is_named(tmp_path, key, body, message):
    f = write(tmp_path / "cluster.yml", body.format(key=key))
    with pytest.raises(ValueError, match=re.escape(message)):
        check_training_service(f)


def test_search_refuses_a_bad_config_before_training(tmp_path, capsys, glue_dir):
    f = write(tmp_path / "cluster.yml", "trainingService:\n  platform: remote\n  machineList: []\n")
    out = tmp_path / "run"
    assert search_main(["--glue-dir", str(glue_dir), "--training-service-config", str(f),
                        "--output-dir", str(out)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "cluster.yml: RemoteConfig: must provide at least one machine" in err[0]
    assert not out.exists()


def test_trials_on_other_machines_need_the_manager_reachable(tmp_path, key):
    """The manager listens on loopback by default; trials elsewhere could not report: refused, naming --host."""
    from strategies.config import SearchConfig
    from supernet.core.errors import InputError
    f = write(tmp_path / "cluster.yml", f"""trainingService:
  platform: remote
  machineList:
    - host: 10.0.0.2
      user: alice
      sshKeyFile: {key}
""")
    with pytest.raises(InputError, match="give --host 0.0.0.0"):
        SearchConfig(training_service_config=str(f))
    assert SearchConfig(training_service_config=str(f), host="0.0.0.0").host == "0.0.0.0"
