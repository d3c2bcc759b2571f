"""A web-UI trial in ~0.1 s: standard library only, scoring done by the search process.

NNI's own trial entry (``python -m nni.nas.execution.training_service trial``) imports torch,
NNI's NAS stack and PyTorch Lightning (measured here: 4.4 s of a 5 s trial) to run a 15 ms
scoring. This entry speaks NNI's v3 trial command channel directly (HTTP: PUT a command, GET the
reply; see nni/runtime/trial_command_channel/v3.py and nni/runtime/command_channel/http.py in
NNI 3.0), reads the candidate's ``sample`` from the parameter record, asks the long-lived scorer
in the search process for its metrics (``strategies.trials.ScoringServer``) and reports them
as NNI's final metric. Every candidate is still one trial in the web UI, with its parameters
and metrics. Tied to NNI 3.0's wire format (the last NNI release), and tested against it.
"""
from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from multiprocessing.connection import Client


def _put(url: str, command: dict) -> None:
    req = urllib.request.Request(url, data=json.dumps(command).encode(), method="PUT",
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req).close()


def _get(url: str) -> dict:
    while True:  # the channel long-polls: 408 means "nothing yet, ask again"
        try:
            with urllib.request.urlopen(url) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            if e.code != 408:
                raise


def candidate(record: dict) -> tuple[dict, str, int, str]:
    """(sample, scorer host, port, authkey) from NNI's parameter record of a frozen HeadChoices."""
    model = record["parameters"]
    kwargs = model["evaluator"]["__kwargs__"]
    return model["sample"], kwargs["server_host"], int(kwargs["server_port"]), kwargs["server_key"]


def main() -> int:
    url = os.environ["NNI_TRIAL_COMMAND_CHANNEL"]
    _put(url, {"type": "request_parameter"})
    reply = _get(url)
    record = json.loads(reply["parameter"])
    sample, host, port, key = candidate(record)
    with Client((host, port), authkey=key.encode()) as conn:
        conn.send(sample)
        scores = conn.recv()
    metric = {"parameter_id": record["parameter_id"], "trial_job_id": os.environ["NNI_TRIAL_JOB_ID"],
              "type": "FINAL", "sequence": 0, "value": json.dumps(scores)}
    _put(url, {"type": "metric", "metric": json.dumps(metric)})
    print(f"sample {json.dumps(sample)} -> {json.dumps(scores)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
