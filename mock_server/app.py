"""The sandbox app: state injected, both specs served through Connexion's middleware.

`create_app(settings, store=...)` wires the state (store, clock, catalogue, accounts,
authenticator), the handlers of both APIs (the contract at the root, the control API under
/_sandbox) and the request pipeline (`mock_server.pipeline`) around the endpoints
(`mock_server.endpoints`), all through Connexion's public options. Nothing of Connexion is
changed: another Connexion app in the same process is untouched.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
from typing import Any

from connexion import ConnexionMiddleware
from connexion.middleware.swagger_ui import SwaggerUIMiddleware
from connexion.options import SwaggerUIOptions
from connexion.spec import Specification
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

from vpp_sandbox import openapi
from vpp_sandbox.mock_server import documents
from vpp_sandbox.mock_server.accounts import Accounts
from vpp_sandbox.mock_server.admission import Admission
from vpp_sandbox.mock_server.auth import Authenticator, security_map
from vpp_sandbox.mock_server.catalog import Catalog
from vpp_sandbox.mock_server.clock import SandboxClock
from vpp_sandbox.mock_server.control import Control, finish_deletions
from vpp_sandbox.mock_server.endpoints import (
    Api,
    Endpoints,
    SnakeCaseResolver,
    SpecPages,
    operations,
)
from vpp_sandbox.mock_server.errors import Router
from vpp_sandbox.mock_server.faults import FaultMiddleware
from vpp_sandbox.mock_server.handlers import AppState, Handlers
from vpp_sandbox.mock_server.intake import IntakeMiddleware
from vpp_sandbox.mock_server.journal import Journal, print_line
from vpp_sandbox.mock_server.pipeline import not_found, stack
from vpp_sandbox.mock_server.settings import Settings
from vpp_sandbox.mock_server.store import Store
from vpp_sandbox.mock_server.stores import open_store
from vpp_sandbox.mock_server.validation import validator_map

__all__ = ["CONTROL_BASE_PATH", "SandboxApp", "create_app"]

CONTROL_BASE_PATH = "/_sandbox"

log = logging.getLogger("vpp_sandbox.mock_server")


class SandboxApp:
    """The ASGI app: Connexion's middleware around the endpoints; `state` is what handlers use.

    Lifespan: at start-up the middleware is built (Connexion builds it on its first call) and
    the long-lived objects (specs, compiled validators, operations) are frozen out of the
    garbage collector's sight: every full collection walked them, a pause that every request
    in flight waited for. At shutdown the store closes.
    """

    def __init__(
        self, middleware: ConnexionMiddleware, state: AppState, *, owns_store: bool
    ) -> None:
        self.middleware = middleware
        self.state = state
        self.owns_store = owns_store  # it opened the store: it closes it at shutdown
        self._background: set[asyncio.Task[Any]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(scope, receive, send)
            return
        await self.middleware(scope, receive, send)

    async def lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.middleware(scope, _no_message, _ignore)  # builds the stack now
                gc.collect()
                gc.freeze()
                await send({"type": "lifespan.startup.complete"})
                # Deletions a crash interrupted are finished while the server already answers.
                task = asyncio.create_task(self._finish_deletions())
                self._background.add(task)
                task.add_done_callback(self._background.discard)
            elif message["type"] == "lifespan.shutdown":
                for task in self._background:
                    task.cancel()
                if self.owns_store:
                    await self.state.store.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _finish_deletions(self) -> None:
        try:
            finished = await finish_deletions(self.state)
        except Exception as exc:  # the store is down: the next start, or a DELETE, finishes
            log.warning("could not finish the interrupted account deletions: %s", exc)
            return
        if finished:
            log.warning("finished %d account deletion(s) a stop had interrupted", finished)

    def test_client(self, **options: Any) -> TestClient:
        """Starlette's test client on this app (no sockets)."""
        return TestClient(self, **options)


async def _no_message() -> dict[str, Any]:  # pragma: no cover - the stack reads nothing
    return {"type": "lifespan.shutdown"}


async def _ignore(message: Any) -> None:
    pass


def create_app(
    settings: Settings,
    store: Store | None = None,
    *,
    clock: SandboxClock | None = None,
    catalog: Catalog | None = None,
    owns_store: bool | None = None,
) -> SandboxApp:
    """The sandbox app on `store` (default: the one `settings.db` names). The app closes the
    store at shutdown when it opened it, or when told it owns it."""
    documents.prepare()
    owns_store = store is None if owns_store is None else owns_store
    store = store if store is not None else open_store(settings.db, settings)
    accounts = Accounts(
        settings.accounts,
        store,
        admin_key_set=settings.admin_key is not None,
        limit=settings.max_accounts,
    )
    clock = clock if clock is not None else SandboxClock(store)
    state = AppState(
        settings=settings,
        store=store,
        clock=clock,
        catalog=catalog if catalog is not None else Catalog(store),
        # VPP_JWT_SECRET, else the data's own random secret (tokens survive restarts and work
        # on every process sharing the data), read from the store on first use.
        authenticator=Authenticator(settings, accounts, secret=store.signing_secret),
        accounts=accounts,
        admission=Admission(
            store, builders=settings.max_world_builders, real=lambda: clock.real()
        ),
    )
    journal = Journal(
        settings.journal_size,
        settings.journal_bytes,
        echo=print_line if settings.access_log else None,
    )
    apis = [
        # The control API first: the contract's is mounted at the root and would take its paths.
        Api(openapi.CONTROL, CONTROL_BASE_PATH, Control(state, journal)),
        Api(openapi.CONTRACT, "", Handlers(state)),
    ]
    router = Router(
        {api.base_path + path: item for api in apis for path, item in api.spec["paths"].items()}
    )

    def swagger_ui(app: ASGIApp) -> SwaggerUIMiddleware:
        ui = SwaggerUIMiddleware(app)
        for api in apis:
            ui.add_api(
                Specification.load(openapi.load(api.name)),
                base_path=api.base_path,
                # The spec itself is served by SpecPages, naming this server.
                swagger_ui_options=SwaggerUIOptions(serve_spec=False, swagger_ui_path="/ui"),
            )
        return ui

    table = operations(apis, documents.participation_schema())
    endpoints = Endpoints(table, SpecPages(apis, swagger_ui, not_found(router)))
    middleware = ConnexionMiddleware(
        endpoints,
        middlewares=stack(
            journal=journal,
            router=router,
            real=lambda: state.clock.real(),  # a test may swap the clock
            state=state,
            admin_key=settings.admin_key,
            list_parameters=table["", "listVppParticipations"].parameters,
            intake=functools.partial(
                IntakeMiddleware,
                max_body_bytes=settings.max_body_bytes,
                max_headers=settings.max_headers,
                max_header_bytes=settings.max_header_bytes,
                body_timeout=settings.body_timeout,
                route_of=router.match,
            ),
            faults=functools.partial(
                FaultMiddleware, buckets=store, rate_limit=settings.rate_limit
            ),
        ),
        security_map=security_map(state.authenticator),
        validator_map=validator_map(),
        strict_validation=True,
    )
    for api in apis:
        middleware.add_api(
            openapi.load(api.name),  # Connexion resolves $refs in place: its own copy
            base_path=api.base_path,
            resolver=SnakeCaseResolver(api.handlers),
        )
    return SandboxApp(middleware, state, owns_store=owns_store)
