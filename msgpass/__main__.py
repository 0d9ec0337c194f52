"""``python -m msgpass`` is the ``msgpass`` command."""

import sys

from .cli import main

sys.exit(main())
