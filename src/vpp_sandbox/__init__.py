"""The `vpp-sandbox` command: the composition root that wires the three packages together."""
