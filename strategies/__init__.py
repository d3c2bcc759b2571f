"""Search strategies over the head supernet. Importing this package stays light (no NNI, no
Lightning): the registry names strategies, and each module imports what it runs."""
from .registry import NAMES as STRATEGIES, ONE_SHOT  # noqa: F401
