"""NNI 3.0 accommodations: the import-time warning filter, and the DARTS parameter-order patch."""
import subprocess
import sys

from conftest import ROOT

_PROBE = ("import warnings; warnings.simplefilter('always'); {pre}"
          "import nni.nas.nn.pytorch; import warnings as w; "
          "w.warn('an unrelated RuntimeWarning', RuntimeWarning)")


def _stderr(pre: str) -> str:
    return subprocess.run([sys.executable, "-c", _PROBE.format(pre=pre)], cwd=ROOT, capture_output=True,
                          text=True, check=True).stderr


def test_nni_warns_without_the_filter():
    assert "is found to be not a nn.Module" in _stderr("")


def test_filter_removes_that_warning_and_keeps_others():
    err = _stderr("import supernet; ")
    assert "is found to be not a nn.Module" not in err
    assert "an unrelated RuntimeWarning" in err


def test_darts_arch_parameters_keep_module_order_after_the_patch():
    import torch
    from torch import nn

    import strategies.oneshot  # noqa: F401  (applies the patch)
    from nni.nas.oneshot.pytorch.differentiable import DartsLightningModule
    from supernet.nni_compat import _ordered_arch_parameters

    assert DartsLightningModule.arch_parameters is _ordered_arch_parameters

    class Holder:
        def __init__(self, params):
            self.params = params

        def arch_parameters(self):
            return self.params

    alphas = [nn.Parameter(torch.zeros(n)) for n in range(2, 40)]
    fake = type("Fake", (), {"supernet_modules": lambda self: [Holder(alphas[:20]), Holder(alphas[10:])]})()
    assert DartsLightningModule.arch_parameters(fake) == alphas  # module order, each once
