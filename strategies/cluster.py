"""Multi-trial search on NNI's other training services (remote machines over SSH, Kubernetes, ...).

The file is the part of an NNI experiment config that says where trials run, in NNI's own keys:

    nniManagerIp: 10.0.0.1        # optional: the address the training machines reach this one at
    trainingService:
      platform: remote
      machineList:
        - host: 10.0.0.2
          user: alice
          sshKeyFile: ~/.ssh/id_rsa
          pythonPath: /opt/venv/bin

It is checked with NNI's own config classes when the search starts (before any training), without
connecting anywhere. Trials on other machines use NNI's standard trial entry and read the search
state from the run directory, so that directory must be on storage every machine mounts at the
same path.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from supernet.core.errors import InputError


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InputError(f"--training-service-config {path}: no such file")
    text = path.read_text(encoding="utf-8")
    kind = "JSON" if path.suffix.lower() == ".json" else "YAML"
    try:
        if kind == "JSON":
            d = json.loads(text)
        else:
            import yaml
            d = yaml.safe_load(text)
    except Exception as e:  # yaml and json raise their own error types
        raise InputError(f"--training-service-config {path} is not valid {kind} "
                         f"({type(e).__name__}: {str(e).splitlines()[0]})") from None
    if isinstance(d, dict):
        unknown = sorted(set(d) - {"trainingService", "nniManagerIp"})
        if unknown:
            raise InputError(f"--training-service-config {path}: unknown key {unknown[0]!r}; "
                             "valid: trainingService, nniManagerIp")
    if not isinstance(d, dict) or not isinstance(d.get("trainingService"), dict):
        raise InputError(f"--training-service-config {path}: expected a mapping with a 'trainingService' section "
                         "(and optionally 'nniManagerIp'), as in an NNI experiment config")
    return d


def apply_training_service(exp_config, path: str | Path) -> None:
    """Put the file's training service into an NNI experiment config (raises for a bad file)."""
    from nni.experiment.config.utils.internal import load_training_service_config
    path = Path(path)
    d = _read(path)
    try:
        service = load_training_service_config(dict(d["trainingService"]))
        if isinstance(service, dict):
            raise InputError(f"unknown platform {service.get('platform')!r}")
        if service.platform == "local":
            raise InputError("platform 'local' is the default; drop --training-service-config")
        exp_config.training_service = service
        if d.get("nniManagerIp"):
            exp_config.nni_manager_ip = d["nniManagerIp"]
        exp_config.validate()
    except (ValueError, AttributeError, TypeError, AssertionError) as e:
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputError(f"--training-service-config {path}: {message}") from None


def check_training_service(path: str | Path) -> str:
    """Validate the file as the search will use it; returns the platform."""
    from nni.nas.experiment import NasExperimentConfig
    exp_config = NasExperimentConfig("ts", "simplified", "local")
    exp_config.trial_concurrency = 1
    exp_config.max_trial_number = 1
    apply_training_service(exp_config, path)
    return exp_config.training_service.platform
