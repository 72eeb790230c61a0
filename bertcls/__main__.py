"""``python -m bertcls COMMAND``: the ``bertcls`` command without the console script."""

import sys

from bertcls.cli import main

sys.exit(main())
