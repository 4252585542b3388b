"""`python -m embedserve.cli ...`: the same as the `embedserve` command."""

import sys

from embedserve.cli.main import main

sys.exit(main())
