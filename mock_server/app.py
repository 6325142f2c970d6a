"""The Connexion app: the spec, the handlers bound to injected state, validation and errors."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import connexion
import inflection
from connexion.middleware import MiddlewarePosition
from connexion.middleware.swagger_ui import SwaggerUIAPI, SwaggerUIMiddleware
from connexion.options import SwaggerUIOptions
from connexion.resolver import Resolver
from starlette.datastructures import Headers
from starlette.types import Scope, Send

from vpp_sandbox import openapi
from vpp_sandbox.mock_server import documents, errors, speedups
from vpp_sandbox.mock_server.accounts import Accounts
from vpp_sandbox.mock_server.auth import Authenticator, security_map
from vpp_sandbox.mock_server.catalog import Catalog
from vpp_sandbox.mock_server.clock import Clock, Namespace, SandboxClock
from vpp_sandbox.mock_server.control import Control
from vpp_sandbox.mock_server.encoding import OrjsonJsonifier
from vpp_sandbox.mock_server.faults import FaultMiddleware
from vpp_sandbox.mock_server.handlers import AppState, Handlers
from vpp_sandbox.mock_server.intake import IntakeMiddleware
from vpp_sandbox.mock_server.journal import Journal, JournalMiddleware, print_line
from vpp_sandbox.mock_server.settings import Settings
from vpp_sandbox.mock_server.store import Store
from vpp_sandbox.mock_server.stores import open_store
from vpp_sandbox.mock_server.validation import validator_map

__all__ = [
    "CONTROL_BASE_PATH",
    "SnakeCaseResolver",
    "caller_of",
    "create_app",
]

CONTROL_BASE_PATH = "/_sandbox"


class SnakeCaseResolver(Resolver):  # type: ignore[misc]
    """operationId `createVppParticipation` -> `handlers.create_vpp_participation`."""

    def __init__(self, handlers: object) -> None:
        def function_resolver(operation_id: str) -> Callable[..., Any]:
            handler: Callable[..., Any] = getattr(handlers, inflection.underscore(operation_id))
            return handler

        super().__init__(function_resolver=function_resolver)

    def resolve_operation_id(self, operation: Any) -> str:
        return str(operation.operation_id)


async def caller_of(state: AppState, headers: Mapping[str, str]) -> tuple[bool, datetime]:
    """An error body's `live_mode` and `time_created`: the token's mode and its namespace's clock.

    Without a valid token: test mode and real time. Looked up per error (a test or a world may
    swap `state.clock`), and never allowed to turn an error into a 500.
    """
    try:
        claims = await state.authenticator.claims_of(headers)
        if claims is None:
            return False, state.clock.real()
        namespace = Namespace(str(claims["account_id"]), bool(claims["live_mode"]))
        return namespace.live_mode, await state.clock.now(namespace)
    except Exception:
        return False, state.clock.real()


class _ServedSpec(SwaggerUIAPI):  # type: ignore[misc]
    """The served spec (/openapi.json, Swagger UI) names this server, not a blank server.

    Connexion writes `servers: [{"url": ""}]` (the mount path) into the spec it serves, which
    Swagger UI shows as an empty choice; here it is the origin the spec was fetched from.
    """

    def _spec_for_prefix(self, request: Any) -> dict[str, Any]:
        spec: dict[str, Any] = super()._spec_for_prefix(request)
        base = str((spec.get("servers") or [{}])[0].get("url", ""))
        origin = f"{request.url.scheme}://{request.url.netloc}"
        spec["servers"] = [{"url": origin + base, "description": "This VPP Sandbox"}]
        return spec


class _SwaggerUI(SwaggerUIMiddleware):  # type: ignore[misc]
    """Connexion's Swagger UI middleware, serving `_ServedSpec`s."""

    def add_api(
        self,
        specification: Any,
        base_path: str | None = None,
        arguments: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        api = _ServedSpec(
            specification,
            base_path=base_path,
            arguments=arguments,
            default=self.default_fn,
            **kwargs,
        )
        self.router.mount(api.base_path, app=api.router)


def _middlewares() -> list[Any]:
    """Connexion's middleware list (with speedups' prepared response validation when its
    version guard allows), serving `_ServedSpec`s for Swagger UI."""
    return [_SwaggerUI if m is SwaggerUIMiddleware else m for m in speedups.middlewares()]


# -- the app ------------------------------------------------------------------------------------


def create_app(
    settings: Settings,
    store: Store | None = None,
    *,
    clock: Clock | None = None,
    catalog: Catalog | None = None,
) -> connexion.AsyncApp:
    """The sandbox app; state is injected (`app.state` is the AppState handlers use).

    Two APIs on one app: the contract at the root, and the sandbox control API under
    /_sandbox (its own spec, Swagger UI at /_sandbox/ui/), with the same auth and errors.
    """
    speedups.install()
    documents.prepare()
    store = store if store is not None else open_store(settings.db)
    accounts = Accounts(
        settings.accounts,
        store,
        admin_key_set=settings.admin_key is not None,
        limit=settings.max_accounts,
    )
    state = AppState(
        settings=settings,
        store=store,
        clock=clock if clock is not None else SandboxClock(store),
        catalog=catalog if catalog is not None else Catalog(store),
        # VPP_JWT_SECRET, else the data's own random secret (tokens survive restarts and work
        # on every process sharing the data), read from the store on first use.
        authenticator=Authenticator(settings, accounts, secret=store.signing_secret),
        accounts=accounts,
    )
    spec = openapi.load(openapi.CONTRACT)
    control_spec = openapi.load(openapi.CONTROL)
    journal = Journal(
        settings.journal_size,
        settings.journal_namespaces,
        echo=print_line if settings.access_log else None,
    )
    # Error contexts, 404s and 405 `Allow` headers know the paths of both APIs.
    routes = {
        "paths": {
            **spec["paths"],
            **{CONTROL_BASE_PATH + p: item for p, item in control_spec["paths"].items()},
        }
    }
    app = connexion.AsyncApp(
        __name__,
        security_map=security_map(state.authenticator),
        swagger_ui_options=SwaggerUIOptions(swagger_ui_path="/ui"),
        jsonifier=OrjsonJsonifier(),
        middlewares=_middlewares(),
    )
    # The control API first: the contract's API is mounted at the root and would take its paths.
    app.add_api(
        openapi.load(openapi.CONTROL),  # Connexion resolves $refs in place: its own copy
        base_path=CONTROL_BASE_PATH,
        resolver=SnakeCaseResolver(Control(state, journal)),
        pythonic_params=True,
        strict_validation=True,
        validate_responses=True,
        validator_map=validator_map(),
    )
    app.add_api(
        openapi.load(openapi.CONTRACT),
        resolver=SnakeCaseResolver(Handlers(state)),
        pythonic_params=True,
        strict_validation=True,
        validate_responses=True,
        validator_map=validator_map(),
    )
    async def authenticated(headers: Mapping[str, str]) -> bool:
        return await state.authenticator.claims_of(headers) is not None

    errors.install(
        app, routes, caller=lambda headers: caller_of(state, headers), authenticated=authenticated
    )
    router = errors.Router(routes)

    async def render(scope: Scope, send: Send, code: str, message: str) -> None:
        live_mode, now = await caller_of(state, Headers(scope=scope))
        body = errors.error_body(
            code,
            message,
            context=router.context(scope.get("method", "GET"), scope.get("path", "/")),
            live_mode=live_mode,
            now=now,
        )
        payload = json.dumps(body).encode()
        await send(
            {
                "type": "http.response.start",
                "status": errors.status_of(code),
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    # Outermost of ours (added first at this position): it sees every answer, errors included.
    app.add_middleware(
        JournalMiddleware,
        position=MiddlewarePosition.BEFORE_EXCEPTION,
        journal=journal,
        verify=state.authenticator.verify,
    )
    # After security (it needs the caller's namespace), before validation and the handlers.
    app.add_middleware(
        FaultMiddleware,
        position=MiddlewarePosition.BEFORE_VALIDATION,
        buckets=store,
        rate_limit=settings.rate_limit,
    )
    app.add_middleware(
        IntakeMiddleware,
        position=MiddlewarePosition.BEFORE_EXCEPTION,
        max_body_bytes=settings.max_body_bytes,
        max_headers=settings.max_headers,
        max_header_bytes=settings.max_header_bytes,
        body_timeout=settings.body_timeout,
        route_of=router.match,
        render=render,
    )
    app.state = state  # type: ignore[attr-defined]
    return app
