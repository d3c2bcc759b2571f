"""Search strategies over the head supernet. Importing this package stays light (no NNI, no
Lightning): the registry names strategies, and each module imports what it runs."""
from .registry import NAMES as STRATEGIES  # noqa: F401
from .registry import ONE_SHOT  # noqa: F401
