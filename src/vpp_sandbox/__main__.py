"""`python -m vpp_sandbox …`: the same command as `vpp-sandbox …`."""

import sys

from vpp_sandbox.cli import main

if __name__ == "__main__":  # a spawned process (serve's workers, world building) imports this
    sys.exit(main())
