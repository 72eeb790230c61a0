"""`python -m bertcls.distill ...`: the same as `bertcls distill ...`."""

import sys

from bertcls.distill.run import main

main(sys.argv[1:])
