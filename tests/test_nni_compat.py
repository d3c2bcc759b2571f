"""The one NNI 3.0 accommodation: its import-time torch-version warning is filtered, and only that."""
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
