"""`python -m stackwise ...` is the same as `stackwise ...` (torchrun needs the module form)."""

import sys

from stackwise.cli import main

sys.exit(main())
