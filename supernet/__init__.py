"""Weight-sharing NAS of classification heads on BERT-family encoders, built on NNI."""
from supernet.core import nni_compat  # noqa: F401  (filters NNI 3.0's harmless torch-version warning before nni imports)
