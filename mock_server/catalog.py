"""Display data of providers, programmes and devices: what a world knows, else derived from ids."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import orjson

from vpp_sandbox.mock_server.clock import Namespace
from vpp_sandbox.mock_server.lifecycle import Party

__all__ = ["Catalog", "Resolved", "derived_location", "derived_programme", "derived_provider"]

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


class CatalogStore(Protocol):
    async def catalog_put(
        self, kind: str, entries: Mapping[str, str], namespace: Namespace | None = None
    ) -> None: ...

    async def catalog_get(
        self, keys: Sequence[tuple[str, str]], namespace: Namespace | None = None
    ) -> dict[tuple[str, str], str]: ...


def _party_json(party: Party) -> str:
    return orjson.dumps([party.display_name, party.url]).decode()


def _party(party_id: str, data: str) -> Party:
    name, url = orjson.loads(data)
    return Party(party_id, name, url)


class Catalog:
    """Known providers, programmes and device locations (from loaded worlds), with fallbacks.

    What a world knows is kept in the store, so every process answers alike: the start-up
    world's (`serve --world`) for every namespace, a world a namespace loaded for that namespace
    alone (it goes with the namespace's next load, its reset or its account), so one tenant's
    world never renames another's providers. Unknown ids get realistic UK-style data derived
    deterministically from the id, so the same id always shows the same names and URLs.
    """

    def __init__(self, store: CatalogStore) -> None:
        self._store = store

    async def register(
        self,
        *,
        providers: Iterable[Party] = (),
        programmes: Iterable[Party] = (),
        device_locations: Mapping[str, str] | None = None,
        namespace: Namespace | None = None,
    ) -> None:
        """The hook for a loaded world: known parties and device locations win over derivation
        (in `namespace` alone, or everywhere for the start-up world)."""
        put = self._store.catalog_put
        await put("provider", {p.id: _party_json(p) for p in providers}, namespace)
        await put("programme", {p.id: _party_json(p) for p in programmes}, namespace)
        await put("location", dict(device_locations or {}), namespace)

    async def resolve(
        self, namespace: Namespace, provider_id: str, programme_id: str, device_id: str
    ) -> Resolved:
        """What a new participation of `namespace` shows of its provider, programme and device
        (one lookup)."""
        known = await self._store.catalog_get(
            [("provider", provider_id), ("programme", programme_id), ("location", device_id)],
            namespace,
        )
        data = known.get(("provider", provider_id))
        provider = _party(provider_id, data) if data else derived_provider(provider_id)
        data = known.get(("programme", programme_id))
        programme = (
            _party(programme_id, data) if data else derived_programme(programme_id, provider)
        )
        location = known.get(("location", device_id)) or derived_location(device_id)
        return Resolved(provider, programme, location)


@dataclass(frozen=True, slots=True)
class Resolved:
    provider: Party
    programme: Party
    location_id: str


def derived_provider(provider_id: str) -> Party:
    d = _digest("provider", provider_id)
    stem = _pick(_PROVIDER_STEMS, d, 0)
    name = f"{stem} {_pick(_PROVIDER_SUFFIXES, d, 1)}"
    return Party(provider_id, name, f"https://s.flatpeak.com/{d[2:8].hex()}.png")


def derived_programme(programme_id: str, provider: Party) -> Party:
    d = _digest("programme", programme_id)
    name = f"{_pick(_PLACES, d, 0)} {_pick(_PROGRAMME_KINDS, d, 1)}"
    domain = _slug(provider.display_name.split()[0]) + ".co.uk"
    return Party(programme_id, name, f"https://{domain}/programmes/{_slug(name)}")


def derived_location(device_id: str) -> str:
    return "loc_" + _digest("location", device_id)[:12].hex()
