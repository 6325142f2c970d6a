"""Display data of providers, programmes and devices: what a world knows, else derived from ids."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence

from vpp_sandbox.mock_server.lifecycle import Party

__all__ = ["Catalog"]

_PROVIDER_STEMS = (
    "Brightwater",
    "Greenvale",
    "Northstar",
    "Kestrel",
    "Pennine",
    "Solent",
    "Heron",
    "Oakridge",
    "Cotswold",
    "Mersey",
    "Highland",
    "Severn",
    "Wren",
    "Tamar",
    "Ashdown",
    "Kinder",
    "Fenland",
    "Chiltern",
    "Dales",
    "Harbour",
)
_PROVIDER_SUFFIXES = ("Energy", "Power", "Home Energy", "Flex", "Energy Co-op")
_PLACES = (
    "Bristol",
    "Leeds",
    "Manchester",
    "Glasgow",
    "Cardiff",
    "Norwich",
    "Brighton",
    "Exeter",
    "York",
    "Nottingham",
    "Sheffield",
    "Edinburgh",
    "Oxford",
    "Plymouth",
    "Belfast",
    "Hull",
)
_PROGRAMME_KINDS = (
    "Powershare",
    "Flex Rewards",
    "Peak Saver",
    "Demand Flex",
    "Grid Helper",
    "Battery Boost",
    "Smart Saver",
    "Community Flex",
)


def _digest(*parts: str) -> bytes:
    return hashlib.sha256("\x1f".join(parts).encode()).digest()


def _pick(options: Sequence[str], digest: bytes, byte: int) -> str:
    return options[digest[byte] % len(options)]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


class Catalog:
    """Known providers, programmes and device locations (from a loaded world), with fallbacks.

    Unknown ids get realistic UK-style data derived deterministically from the id, so the same
    id always shows the same names and URLs.
    """

    def __init__(self) -> None:
        self._providers: dict[str, Party] = {}
        self._programmes: dict[str, Party] = {}
        self._locations: dict[str, str] = {}

    def register(
        self,
        *,
        providers: Iterable[Party] = (),
        programmes: Iterable[Party] = (),
        device_locations: Mapping[str, str] | None = None,
    ) -> None:
        """The hook for a loaded world: known parties and device locations win over derivation."""
        self._providers.update({p.id: p for p in providers})
        self._programmes.update({p.id: p for p in programmes})
        self._locations.update(device_locations or {})

    def clear(self) -> None:
        self._providers.clear()
        self._programmes.clear()
        self._locations.clear()

    def provider(self, provider_id: str) -> Party:
        if provider_id in self._providers:
            return self._providers[provider_id]
        d = _digest("provider", provider_id)
        stem = _pick(_PROVIDER_STEMS, d, 0)
        name = f"{stem} {_pick(_PROVIDER_SUFFIXES, d, 1)}"
        return Party(provider_id, name, f"https://s.flatpeak.com/{d[2:8].hex()}.png")

    def programme(self, programme_id: str, provider: Party) -> Party:
        if programme_id in self._programmes:
            return self._programmes[programme_id]
        d = _digest("programme", programme_id)
        name = f"{_pick(_PLACES, d, 0)} {_pick(_PROGRAMME_KINDS, d, 1)}"
        domain = _slug(provider.display_name.split()[0]) + ".co.uk"
        return Party(programme_id, name, f"https://{domain}/programmes/{_slug(name)}")

    def location_id(self, device_id: str) -> str:
        if device_id in self._locations:
            return self._locations[device_id]
        return "loc_" + _digest("location", device_id)[:12].hex()
