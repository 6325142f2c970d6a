"""Seeded worlds into the sandbox: the one module of the mock that imports `fixtures`.

`fixtures.worlds` builds a world (pure data, valid by construction); this module moves it to the
sandbox clock, writes it to the store in one bulk transaction and registers what it knows
(providers, programmes, device locations, accounts).
"""

from __future__ import annotations

import gc
import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from vpp_sandbox.fixtures.generator import shift
from vpp_sandbox.fixtures.worlds import WORLDS, World, build
from vpp_sandbox.mock_server.autopilot import next_due
from vpp_sandbox.mock_server.catalog import Catalog
from vpp_sandbox.mock_server.clock import Clock, Namespace
from vpp_sandbox.mock_server.lifecycle import Participation, encode_document
from vpp_sandbox.mock_server.settings import Account, Settings
from vpp_sandbox.mock_server.store import Row, Store

__all__ = [
    "WORLD_NAMES",
    "Loaded",
    "load_all",
    "load_into",
    "merge_accounts",
    "open_world",
    "prepare",
    "register",
    "shifted_row",
]

WORLD_NAMES = tuple(WORLDS)


def open_world(name_or_file: str, seed: int = 0, size: int | None = None) -> World:
    """A named world (`demo`, `edge-cases`, `load`) built from its seed, or a world JSON file."""
    if name_or_file in WORLDS:
        return build(name_or_file, seed, size)
    path = Path(name_or_file)
    if path.suffix == ".json" or path.is_file():
        if not path.is_file():
            raise ValueError(f"world file {path} does not exist")
        return World.loads(path.read_bytes())
    raise ValueError(
        f"unknown world {name_or_file!r}: give one of {', '.join(WORLDS)} or a world JSON file "
        "(vpp-sandbox fixtures --world NAME --out FILE.json)"
    )


async def register(world: World, catalog: Catalog) -> None:
    """Known ids of the world take its data in creates (contract section 6)."""
    known = world.catalogue()
    await catalog.register(
        providers=known.provider_parties(),
        programmes=known.programme_parties(),
        device_locations=known.device_locations(),
    )


def merge_accounts(accounts: tuple[Account, ...], world: World) -> tuple[Account, ...]:
    """`accounts` plus the world's accounts (a test and a live key each), without repeats."""
    merged = dict.fromkeys(accounts)
    merged.update(dict.fromkeys(world.settings_accounts()))
    return tuple(merged)


async def _delta(world: World, clock: Clock, namespace: Namespace) -> timedelta:
    return (await clock.now(namespace)).replace(microsecond=0) - world.now


def shifted_row(store: Store, p: Participation, delta: timedelta) -> Row:
    """`store.row(shift(p, delta))` without building the moved participation.

    A translation in time changes nothing but the times, so the document and the autopilot's
    next step are those of `p` with `delta` added: a third of the work for a big world.
    """
    doc = p.document()
    for entry in doc["participation_state"]:
        if "occurred_at" in entry:
            entry["occurred_at"] += delta
        if "expected_at" in entry:
            entry["expected_at"] += delta
    created = p.time_created + delta
    doc["time_created"] = created
    doc["time_updated"] = p.time_updated + delta
    due = next_due(p)
    return store.row(
        p,
        encode_document(doc),
        time_created=created,
        next_due=None if due is None else due + delta,
    )


async def load_all(store: Store, clock: Clock, world: World) -> int:
    """Every participation of the world, as it is, each namespace's share moved to its clock."""
    deltas: dict[Namespace, timedelta] = {}
    for _, p in world.participations:
        ns = Namespace(p.account_id, p.live_mode)
        if ns not in deltas:
            deltas[ns] = await _delta(world, clock, ns)

    def rows() -> Iterator[Row]:
        for _, p in world.participations:
            yield shifted_row(store, p, deltas[Namespace(p.account_id, p.live_mode)])

    return await store.load_rows(rows())


@dataclass(frozen=True, slots=True)
class Loaded:
    deleted: int
    loaded: int
    skipped_other_mode: int


def _owned_id(namespace: Namespace, participation_id: str) -> str:
    key = f"{namespace.account_id}:{int(namespace.live_mode)}:{participation_id}"
    return "vpp_" + hashlib.sha256(key.encode()).hexdigest()[:24]


async def load_into(store: Store, clock: Clock, world: World, namespace: Namespace) -> Loaded:
    """Replace the namespace's participations with the world's of its mode (any account).

    Participations of another account become the namespace's, with an id derived from the
    namespace and the world id (so one world loads into many accounts without collisions);
    the other mode's are skipped. Times move so the world's `now` is the namespace's clock.
    """
    delta = await _delta(world, clock, namespace)
    mine = [p for _, p in world.participations if p.live_mode == namespace.live_mode]
    moved = (
        shift(
            p,
            delta,
            id=p.id if p.account_id == namespace.account_id else _owned_id(namespace, p.id),
            account_id=namespace.account_id,
        )
        for p in mine
    )
    deleted = await store.delete_namespace(namespace)
    loaded = await store.load_rows(store.row(p) for p in moved)
    return Loaded(deleted, loaded, len(world.participations) - len(mine))


async def prepare(
    settings: Settings, store: Store, clock: Clock, catalog: Catalog
) -> tuple[Settings, str]:
    """`serve --world`: load `settings.world` into an EMPTY store, register it, add its accounts.

    A store that already holds participations keeps them (a restart keeps its state); the
    world's catalogue and accounts are registered either way. Returns the settings with the
    world's accounts, and a line saying what happened.
    """
    if not settings.world:
        return settings, ""
    started = time.perf_counter()
    world = open_world(settings.world, settings.seed, settings.size)
    built = time.perf_counter() - started
    await register(world, catalog)
    settings = settings.with_(accounts=merge_accounts(settings.accounts, world))
    label = f"{world.name} (seed {world.seed}" + (
        f", size {world.size})" if world.size is not None else ")"
    )
    existing = await store.count()
    if existing:
        return settings, (
            f"World {label}: not loaded, {settings.db} already holds {existing} participations "
            "(start with an empty --db to load it again); its accounts and ids are known."
        )
    started = time.perf_counter()
    # Millions of acyclic objects: the cyclic GC would only scan them again and again.
    gc.disable()
    try:
        count = await load_all(store, clock, world)
    finally:
        gc.enable()
    loaded = time.perf_counter() - started
    return settings, (
        f"World {label}: {count} participations loaded in {built + loaded:.2f} s "
        f"(build {built:.2f} s, insert {loaded:.2f} s), shifted to the sandbox clock."
    )
