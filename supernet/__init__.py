"""Weight-sharing NAS of classification heads on BERT-family encoders, built on NNI.

The public Python API, importable from here (loaded on first use, so that ``import supernet`` stays
light for trial processes): ``load_model(path)`` -> a plain model with ``predict`` / ``predict_proba``;
``Architecture`` (the architecture record); ``get_space(name)`` (a search space).
"""
from supernet.core import nni_compat  # noqa: F401  (filters NNI 3.0's harmless torch-version warning before nni imports)

_PUBLIC = {"load_model": "supernet.nn.saved", "Architecture": "supernet.nn.arch", "get_space": "supernet.nn.space"}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'supernet' has no attribute {name!r}")
    import importlib
    return getattr(importlib.import_module(_PUBLIC[name]), name)
