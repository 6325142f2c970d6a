"""The Connexion app: the spec, the handlers bound to injected state, validation and errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import connexion
import inflection
from connexion.middleware import MiddlewarePosition
from connexion.options import SwaggerUIOptions
from connexion.resolver import Resolver
from starlette.datastructures import Headers
from starlette.types import Scope, Send

from vpp_sandbox import openapi
from vpp_sandbox.mock_server import documents, errors, speedups
from vpp_sandbox.mock_server.auth import Authenticator, security_map
from vpp_sandbox.mock_server.catalog import Catalog
from vpp_sandbox.mock_server.clock import Clock, SandboxClock
from vpp_sandbox.mock_server.control import Control
from vpp_sandbox.mock_server.encoding import OrjsonJsonifier
from vpp_sandbox.mock_server.faults import FaultMiddleware
from vpp_sandbox.mock_server.handlers import AppState, Handlers
from vpp_sandbox.mock_server.settings import Settings
from vpp_sandbox.mock_server.store import Store
from vpp_sandbox.mock_server.validation import BodyLimitMiddleware, validator_map

__all__ = [
    "CONTROL_BASE_PATH",
    "SnakeCaseResolver",
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
    store = store if store is not None else Store(settings.db)
    state = AppState(
        settings=settings,
        store=store,
        clock=clock if clock is not None else SandboxClock(store),
        catalog=catalog if catalog is not None else Catalog(),
        authenticator=Authenticator(settings),
    )
    spec = openapi.load(openapi.CONTRACT)
    control_spec = openapi.load(openapi.CONTROL)
    # Error contexts, 404s and 405 `Allow` headers know the paths of both APIs.
    routes = {
        "paths": {
            **spec["paths"],
            **{CONTROL_BASE_PATH + p: item for p, item in control_spec["paths"].items()},
        }
    }
    app = connexion.AsyncApp(
        __name__,
        middlewares=speedups.middlewares(),
        security_map=security_map(state.authenticator),
        swagger_ui_options=SwaggerUIOptions(swagger_ui_path="/ui"),
        jsonifier=OrjsonJsonifier(),
    )
    # The control API first: the contract's API is mounted at the root and would take its paths.
    app.add_api(
        openapi.load(openapi.CONTROL),  # Connexion resolves $refs in place: its own copy
        base_path=CONTROL_BASE_PATH,
        resolver=SnakeCaseResolver(Control(state)),
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
    # `now` looks the clock up on every call: a test or a world may swap `app.state.clock`.
    errors.install(
        app, routes, live_mode_of=state.authenticator.live_mode_of, now=lambda: state.clock.now()
    )
    router = errors.Router(routes)

    async def render(scope: Scope, send: Send, code: str, message: str) -> None:
        body = errors.error_body(
            code,
            message,
            context=router.context(scope.get("method", "GET"), scope.get("path", "/")),
            live_mode=state.authenticator.live_mode_of(Headers(scope=scope)),
            now=state.clock.now(),
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

    # After security (it needs the caller's namespace), before validation and the handlers.
    app.add_middleware(
        FaultMiddleware,
        position=MiddlewarePosition.BEFORE_VALIDATION,
        rate_limit=settings.rate_limit,
    )
    app.add_middleware(
        BodyLimitMiddleware,
        position=MiddlewarePosition.BEFORE_EXCEPTION,
        limit=settings.max_body_bytes,
        render=render,
    )
    app.state = state  # type: ignore[attr-defined]
    return app
