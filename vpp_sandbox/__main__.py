"""`python -m vpp_sandbox …`: the same command as `vpp-sandbox …`."""

import sys

from vpp_sandbox.cli import main

sys.exit(main())
