"""Every accommodation of NNI 3.0 (2023, unmaintained) to today's torch lives here.

1. ``import nni.nas.nn.pytorch`` walks ``torch.nn`` and warns that ``torch.nn.parameter.Buffer``
   (and other new non-module classes) "is not a nn.Module ... your PyTorch version might not be
   supported". The walk only builds NNI's list of wrappable layers; these classes are not layers,
   so the warning is harmless noise and is filtered (that exact message only).
2. ``nnictl`` imports ``pkg_resources``, which setuptools >= 81 no longer ships: setuptools is
   pinned below 81 in setup.cfg / requirements.txt (nothing to patch at run time).
"""
from __future__ import annotations

import warnings
# Seen working here without a patch: Experiment.view of our NAS runs (their stored searchSpace is {}).

_BUFFER_WARNING = r".*is found to be not a nn\.Module, which is unexpected.*"


def silence_layer_scan_warning() -> None:
    warnings.filterwarnings("ignore", message=_BUFFER_WARNING, category=RuntimeWarning)


silence_layer_scan_warning()
