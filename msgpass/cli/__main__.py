"""``python -m msgpass.cli`` is the ``msgpass`` command too."""

import sys

from .commands import main

sys.exit(main())
