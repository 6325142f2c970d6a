"""VPP Sandbox: the `vpp-sandbox` command, its pytest plugin, and clients of a running sandbox.

`from vpp_sandbox import SandboxCallError` (the error the plugin's clients raise on an error
answer), `SandboxAccount` and `SandboxServer` are imported on first use, so importing the
package (as pytest does for the plugin) costs nothing.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["SandboxAccount", "SandboxCallError", "SandboxServer", "SandboxSession"]

_LAZY = {
    "SandboxAccount": "vpp_sandbox.account",
    "SandboxCallError": "vpp_sandbox.client",
    "SandboxServer": "vpp_sandbox.client",
    "SandboxSession": "vpp_sandbox.client",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
