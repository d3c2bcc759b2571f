"""Every accommodation of NNI 3.0 (2023, unmaintained) to today's torch lives here.

1. ``import nni.nas.nn.pytorch`` walks ``torch.nn`` and warns that ``torch.nn.parameter.Buffer``
   (and other new non-module classes) "is not a nn.Module ... your PyTorch version might not be
   supported". The walk only builds NNI's list of wrappable layers; these classes are not layers,
   so the warning is harmless noise and is filtered (that exact message only).
2. ``DartsLightningModule.arch_parameters`` (DARTS, GumbelDARTS, Proxyless) returns
   ``list(set(params))``: the order of the architecture parameters changes from one process to
   the next, so resuming from a Lightning checkpoint restores the architecture optimizer's Adam
   state onto the wrong tensors ("size of tensor a (3) must match ... b (2)", seen here).
   ``patch_darts_arch_parameter_order()`` de-duplicates in module order instead. It is applied by
   ``strategies.oneshot`` (importing NNI's one-shot code pulls in Lightning; ``supernet`` stays light).
3. ``nnictl`` imports ``pkg_resources``, which setuptools >= 81 no longer ships: setuptools is
   pinned below 81 in setup.cfg / requirements.txt (nothing to patch at run time).
"""
from __future__ import annotations

import warnings
# Seen working here without a patch: Experiment.view of our NAS runs (their stored searchSpace is {}).

_BUFFER_WARNING = r".*is found to be not a nn\.Module, which is unexpected.*"


def silence_layer_scan_warning() -> None:
    warnings.filterwarnings("ignore", message=_BUFFER_WARNING, category=RuntimeWarning)


silence_layer_scan_warning()


def _ordered_arch_parameters(self) -> list:
    params = []
    for module in self.supernet_modules():
        if hasattr(module, "arch_parameters"):
            params += list(module.arch_parameters())
    return list(dict.fromkeys(params))  # NNI: list(set(params)), whose order varies per process


def patch_darts_arch_parameter_order() -> None:
    from nni.nas.oneshot.pytorch.differentiable import DartsLightningModule
    DartsLightningModule.arch_parameters = _ordered_arch_parameters
