"""Heavy control work admitted, not just started: one at a time per namespace, world builders
bounded per machine, across every process that shares the store.

A world load, a reset or a clock move of a namespace, and the deletion of an account, each hold
a lease on their scope while they run (a row of the store, `Store.take_job`, so `serve
--workers N` and replicas on PostgreSQL take turns as one process would); a second one waits a
moment in a short queue, then is answered `409 operation_in_progress` naming what runs. A world
build also holds one of this machine's builder slots (`--max-world-builders`, one per CPU core
by default): past them a load waits a little, then is `503 server_busy`. A lease is renewed
while its work runs; when its holder is gone (a crash, `kill -9`) it expires, or at once when
the holder was a process of this machine that no longer runs, so nothing stays locked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import datetime

from vpp_sandbox.mock_server.clock import Namespace
from vpp_sandbox.mock_server.errors import ApiError
from vpp_sandbox.mock_server.lifecycle import format_time
from vpp_sandbox.mock_server.store import Job, Store

__all__ = ["BUILDER_WAIT_S", "JOB_TTL_S", "NAMESPACE_WAIT_S", "Admission", "default_builders"]

log = logging.getLogger("vpp_sandbox.mock_server")

# A lease lasts this long unless renewed (every third of it while its work runs): a holder that
# died stops holding its scope this long after its last renewal at the latest.
JOB_TTL_S = 30.0
# How long a second heavy request of a namespace waits for the first, and a world load for a
# builder slot, before the answer says what runs; and how many may wait per scope and process.
NAMESPACE_WAIT_S = 2.0
BUILDER_WAIT_S = 5.0
MAX_WAITING = 4


def default_builders() -> int:
    """One world builder per CPU core of this machine."""
    return max(1, os.cpu_count() or 1)


class Admission:
    """Leases on heavy work, in `store`; `builders` slots per host for world builds."""

    def __init__(
        self,
        store: Store,
        *,
        builders: int | None = None,
        real: Callable[[], datetime],
        host: str | None = None,
    ) -> None:
        self.store = store
        self.builders = builders or default_builders()
        self.real = real
        self.host = host or socket.gethostname()
        self._waiting: Counter[str] = Counter()

    @contextlib.asynccontextmanager
    async def namespace(self, namespace: Namespace, kind: str) -> AsyncIterator[None]:
        """Run `kind` (a world load, a reset, a clock move) as the namespace's only heavy work."""
        scope = f"ns:{namespace.account_id}:{int(namespace.live_mode)}"
        mode = "live" if namespace.live_mode else "test"
        async with self._lease([scope], kind, NAMESPACE_WAIT_S, lambda job: _in_progress(
            job, f"this account's {mode} mode",
            "World loads, resets and clock moves run one at a time per account and mode.",
        )):
            yield

    @contextlib.asynccontextmanager
    async def account(self, account_id: str) -> AsyncIterator[None]:
        """Run the account's deletion as its only one."""
        async with self._lease([f"account:{account_id}"], "account deletion", NAMESPACE_WAIT_S,
                               lambda job: _in_progress(job, f"account {account_id}", "")):
            yield

    @contextlib.asynccontextmanager
    async def builder(self) -> AsyncIterator[None]:
        """Hold one of this machine's world builder slots while a world is built."""
        scopes = [f"builder:{self.host}:{n}" for n in range(self.builders)]
        async with self._lease(scopes, "world build", BUILDER_WAIT_S, self._builders_busy):
            yield

    def _builders_busy(self, job: Job) -> ApiError:
        return ApiError(
            "server_busy",
            f"All {self.builders} world builders of this sandbox are busy with other world "
            "loads (--max-world-builders); nothing was changed. Retry the load in a few seconds.",
            {"Retry-After": "5"},
        )

    @contextlib.asynccontextmanager
    async def _lease(
        self, scopes: list[str], kind: str, wait: float, refused: Callable[[Job], ApiError]
    ) -> AsyncIterator[None]:
        holder = f"{self.host}/{os.getpid()}/{secrets.token_hex(6)}"
        scope = await self._take(scopes, Job(kind, format_time(self.real())), holder, wait,
                                 refused)
        renewing = asyncio.create_task(self._renew(scope, holder))
        try:
            yield
        finally:
            renewing.cancel()
            try:
                await asyncio.shield(self.store.release_job(scope, holder, now=time.time()))
            except Exception:  # the store is down: the lease expires on its own
                log.warning("could not release the lease on %s; it expires in %g s",
                            scope, JOB_TTL_S)

    async def _take(
        self,
        scopes: list[str],
        job: Job,
        holder: str,
        wait: float,
        refused: Callable[[Job], ApiError],
    ) -> str:
        """The first of `scopes` whose lease `holder` got, waiting up to `wait` seconds in a
        queue of at most MAX_WAITING per scope and process; else what `refused` says."""
        deadline = time.monotonic() + wait
        delay = 0.05
        key = scopes[0]
        self._waiting[key] += 1
        try:
            while True:
                running = job
                for scope in scopes:
                    held = await self.store.take_job(
                        scope, job, holder, now=time.time(), ttl=JOB_TTL_S
                    )
                    if held is not None and self._gone(held.holder):
                        held = await self.store.take_job(
                            scope, job, holder, now=time.time(), ttl=JOB_TTL_S,
                            replace=held.holder,
                        )
                    if held is None:
                        return scope
                    running = held
                if self._waiting[key] > MAX_WAITING or time.monotonic() + delay > deadline:
                    raise refused(running)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)
        finally:
            self._waiting[key] -= 1
            if not self._waiting[key]:
                del self._waiting[key]

    def _gone(self, holder: str) -> bool:
        """The holder was a process of this machine that no longer runs (it was killed)."""
        host, _, rest = holder.partition("/")
        pid = rest.partition("/")[0]
        if host != self.host or not pid.isdigit() or int(pid) == os.getpid():
            return False
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except OSError:  # it runs, as another user
            return False
        return False

    async def _renew(self, scope: str, holder: str) -> None:
        while True:
            await asyncio.sleep(JOB_TTL_S / 3)
            try:
                if not await self.store.renew_job(scope, holder, time.time() + JOB_TTL_S):
                    log.warning("the lease on %s expired while its work ran", scope)
                    return
            except Exception as exc:  # the store is down: try again at the next turn
                log.warning("could not renew the lease on %s: %s", scope, exc)


def _in_progress(job: Job, where: str, why: str) -> ApiError:
    article = "An" if job.kind[:1] in "aeiou" else "A"
    parts = [
        f"{article} {job.kind} started at {job.started} is still running in {where}; nothing "
        "was changed.",
        why,
        "Retry once it has finished (its own request answers then).",
    ]
    return ApiError(
        "operation_in_progress", " ".join(p for p in parts if p), {"Retry-After": "2"}
    )
