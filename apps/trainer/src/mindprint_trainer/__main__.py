"""``python -m mindprint_trainer`` = ``mindprint``."""

import sys

from .cli import main

sys.exit(main())
