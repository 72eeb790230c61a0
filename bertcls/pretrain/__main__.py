"""``python -m bertcls.pretrain`` (the form used before the ``bertcls`` command) keeps working."""

import sys

from bertcls.pretrain.run import main

main(sys.argv[1:])
