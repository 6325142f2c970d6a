"""Seeded worlds into the sandbox: the one module of the mock that imports `fixtures`.

`fixtures.worlds` builds a world (pure data, valid by construction); this module moves it to the
sandbox clock, writes it to the store in batches and registers what it knows (providers,
programmes, device locations, accounts). A big world is built in a process of its own whose
memory is bounded (`BUILD_MEMORY_BYTES`); how many are built at once is
`mock_server.admission`'s.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import hashlib
import multiprocessing
import resource
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import anyio

from vpp_sandbox.fixtures.generator import shift
from vpp_sandbox.fixtures.worlds import COMMITTED, WORLDS, World, build, load_committed
from vpp_sandbox.mock_server.autopilot import next_due
from vpp_sandbox.mock_server.catalog import Catalog
from vpp_sandbox.mock_server.clock import Clock, Namespace
from vpp_sandbox.mock_server.documents import check_document, encode_checked
from vpp_sandbox.mock_server.lifecycle import Participation, encode_document
from vpp_sandbox.mock_server.settings import Account, Settings
from vpp_sandbox.mock_server.store import Admit, Row, Store, row_of

__all__ = [
    "BUILD_MEMORY_BYTES",
    "WORLD_NAMES",
    "BuildFailed",
    "Loaded",
    "load_all",
    "load_into",
    "merge_accounts",
    "open_world",
    "prepare",
    "register",
    "release_memory",
    "shifted_row",
]

WORLD_NAMES = tuple(WORLDS)


def open_world(name_or_file: str, seed: int = 0, size: int | None = None) -> World:
    """A named world (`demo`, `edge-cases`, `load`) built from its seed, or a world JSON file."""
    if name_or_file in WORLDS:
        if seed == 0 and size is None and name_or_file in COMMITTED:
            # The same world as build() makes (a test holds them equal), without Faker.
            return load_committed(name_or_file)
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
    body = encode_document(doc)
    check_document(body)  # the store checks only what it encodes itself
    return store.row(
        p,
        body,
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

    loaded = await store.bulk_load(rows())
    await store.compact()  # the WAL of the load back into the file before anyone is served
    return loaded


@dataclass(frozen=True, slots=True)
class Loaded:
    deleted: int
    loaded: int
    skipped_other_mode: int


def _owned_id(namespace: Namespace, participation_id: str) -> str:
    key = f"{namespace.account_id}:{int(namespace.live_mode)}:{participation_id}"
    return "vpp_" + hashlib.sha256(key.encode()).hexdigest()[:24]


# The address space a world-building process may use: the largest world (100,000) peaks at
# about 300 MB (VmPeak, measured); past this the build fails instead of the machine swapping.
BUILD_MEMORY_BYTES = 1024 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class WorldJob:
    """A world to build for one namespace whose clock reads `now` (picklable: it may travel
    to another process)."""

    name: str
    seed: int
    size: int | None
    account_id: str
    live_mode: bool
    now: datetime
    memory: int = BUILD_MEMORY_BYTES  # the building process's address space, at most


# What `world_rows` yields: ("catalog", (providers, programmes, device locations)), then
# ("rows", [row, ...]) chunks, then ("done", participations of the other mode, skipped).
Message = tuple[str, Any]
# A world this big is built in a process of its own: its CPU and memory never touch the server.
IN_PROCESS_MAX = 2_000
_CHUNK = 500


class BuildFailed(RuntimeError):
    """The world-building process failed (out of its memory, or it died): nothing loaded."""


def world_rows(job: WorldJob) -> Iterator[Message]:
    """Build the world and yield what loading it into the job's namespace takes.

    Participations of another account become the namespace's, with an id derived from the
    namespace and the world id (so one world loads into many accounts without collisions);
    the other mode's are skipped. Times move so the world's `now` is the namespace's clock.
    """
    world = open_world(job.name, job.seed, job.size)
    known = world.catalogue()
    yield "catalog", (known.provider_parties(), known.programme_parties(),
                      known.device_locations())
    namespace = Namespace(job.account_id, job.live_mode)
    delta = job.now.replace(microsecond=0) - world.now
    mine = [p for _, p in world.participations if p.live_mode == job.live_mode]
    for start in range(0, len(mine), _CHUNK):
        rows = []
        for p in mine[start : start + _CHUNK]:
            owned = p.id if p.account_id == job.account_id else _owned_id(namespace, p.id)
            moved = shift(p, delta, id=owned, account_id=job.account_id)
            rows.append(row_of(moved, encode_checked(moved), next_due=next_due(moved)))
        yield "rows", rows
    yield "done", len(world.participations) - len(mine)


def _child(conn: Connection, job: WorldJob) -> None:
    """The world-building process: streams `world_rows` through the pipe, then exits, within
    `job.memory` bytes of address space."""
    with contextlib.suppress(ValueError, OSError):  # where the system has no such limit
        resource.setrlimit(resource.RLIMIT_AS, (job.memory, job.memory))
    try:
        for message in world_rows(job):
            conn.send(message)
    except MemoryError:
        with contextlib.suppress(OSError):
            conn.send(("failed", f"it needed more than {job.memory // 2**20} MiB"))
    except OSError:
        pass  # the server stopped reading (the load was refused or its account deleted)
    except Exception as exc:
        with contextlib.suppress(OSError):
            conn.send(("error", str(exc)))
    finally:
        conn.close()


async def _messages(job: WorldJob) -> AsyncIterator[Message]:
    """`world_rows(job)`, off the event loop: in a thread, or for a big world a process."""
    if job.size is None or job.size <= IN_PROCESS_MAX:
        produced = world_rows(job)
        while (made := await anyio.to_thread.run_sync(next, produced, None)) is not None:
            yield made
        return
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(sender, job), daemon=True)
    process.start()
    sender.close()
    try:
        while True:
            try:
                message: Message = await anyio.to_thread.run_sync(receiver.recv)
            except EOFError:
                raise BuildFailed("the world-building process stopped") from None
            if message[0] == "error":
                raise ValueError(message[1])
            if message[0] == "failed":
                raise BuildFailed(message[1])
            yield message
            if message[0] == "done":
                return
    finally:
        receiver.close()
        # The process exits on its own once it has sent everything: wait for it off the loop.
        await anyio.to_thread.run_sync(process.join, 5)
        if process.is_alive():  # pragma: no cover - only when the request was abandoned
            process.kill()


async def load_into(
    store: Store,
    clock: Clock,
    catalog: Catalog,
    namespace: Namespace,
    name: str,
    seed: int = 0,
    size: int | None = None,
    *,
    admit: Admit | None = None,
) -> Loaded:
    """Replace the namespace's participations with a world's of its mode (see `world_rows`).

    The world is built off the event loop and written in small batches, so the other
    namespaces' requests go on meanwhile; this namespace's requests see it arrive. Each batch
    is admitted by `admit` given what the namespace holds (creates may run meanwhile), and
    none is written once the account is deleted.
    """
    job = WorldJob(name, seed, size, namespace.account_id, namespace.live_mode,
                   await clock.now(namespace))
    deleted = await store.delete_namespace(namespace)
    loaded = skipped = 0
    async for kind, payload in _messages(job):
        if kind == "catalog":
            providers, programmes, locations = payload
            await catalog.register(
                providers=providers,
                programmes=programmes,
                device_locations=locations,
                namespace=namespace,
            )
        elif kind == "rows":
            loaded += await store.load_rows(payload, namespace=namespace, admit=admit)
        else:
            skipped = payload
    await store.compact()
    return Loaded(deleted, loaded, skipped)


def _within_the_cap(world: World, limit: int) -> None:
    """A ValueError (serve says it and stops) when a namespace of the world would hold more
    than `--max-participations`: the start-up world is an insert path like any other."""
    held = Counter(Namespace(p.account_id, p.live_mode) for _, p in world.participations)
    if not held:
        return
    (namespace, most), = held.most_common(1)
    if most > limit:
        mode = "live" if namespace.live_mode else "test"
        raise ValueError(
            f"the world gives {namespace.account_id}'s {mode} mode {most} participations, more "
            f"than --max-participations {limit}: load a smaller --size, or raise "
            "--max-participations (VPP_MAX_PARTICIPATIONS)"
        )


def release_memory() -> None:
    """Hand the heap a world used back to the system (100,000: about 480 -> 255 MB).

    The world's objects are garbage once it is in the store, but glibc keeps the freed heap;
    malloc_trim returns it. Elsewhere (no glibc) this only collects.
    """
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


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
    # Millions of acyclic objects: the cyclic GC would only scan them again and again.
    gc.disable()
    try:
        started = time.perf_counter()
        world = open_world(settings.world, settings.seed, settings.size)
        built = time.perf_counter() - started
        _within_the_cap(world, settings.max_participations)
        await register(world, catalog)
        settings = settings.with_(accounts=merge_accounts(settings.accounts, world))
        label = f"{world.name} (seed {world.seed}" + (
            f", size {world.size})" if world.size is not None else ")"
        )
        existing = await store.count()
        if existing:
            return settings, (
                f"World {label}: not loaded, {settings.db} already holds {existing} "
                "participations (start with an empty --db to load it again); its accounts and "
                "ids are known."
            )
        started = time.perf_counter()
        count = await load_all(store, clock, world)
        loaded = time.perf_counter() - started
    finally:
        gc.enable()
    return settings, (
        f"World {label}: {count} participations loaded in {built + loaded:.2f} s "
        f"(build {built:.2f} s, insert {loaded:.2f} s), shifted to the sandbox clock."
    )
