"""`python -m smis_tui.cli`: the same as the `smis-tui` command."""

import sys

from smis_tui.cli import main

sys.exit(main())
