"""``python -m retrain ARCH.json [--baseline linear]``: fine-tune plain models per seed, compare on dev."""
import sys

from .cli import main

sys.exit(main())
