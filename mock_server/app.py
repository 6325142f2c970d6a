"""The Connexion app: the spec, the handlers bound to injected state, validation and errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import connexion
import inflection
import yaml
from connexion.middleware import MiddlewarePosition
from connexion.options import SwaggerUIOptions
from connexion.resolver import Resolver
from starlette.datastructures import Headers
from starlette.types import Scope, Send

from mock_server import errors, speedups
from mock_server.auth import Authenticator, security_map
from mock_server.catalog import Catalog
from mock_server.clock import Clock, SandboxClock
from mock_server.control import Control
from mock_server.encoding import OrjsonJsonifier
from mock_server.faults import FaultMiddleware
from mock_server.handlers import AppState, Handlers
from mock_server.settings import Settings
from mock_server.store import Store
from mock_server.validation import BodyLimitMiddleware, validator_map

__all__ = [
    "CONTROL_BASE_PATH",
    "CONTROL_SPEC_PATH",
    "SPEC_PATH",
    "SnakeCaseResolver",
    "create_app",
    "load_spec",
]

SPEC_PATH = Path(__file__).resolve().parent.parent / "openapi" / "vpp-participations.yaml"
CONTROL_SPEC_PATH = SPEC_PATH.parent / "sandbox-control.yaml"
CONTROL_BASE_PATH = "/_sandbox"


def load_spec(path: Path = SPEC_PATH) -> dict[str, Any]:
    with path.open(encoding="utf-8") as f:
        spec: dict[str, Any] = yaml.safe_load(f)
    return spec


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
    store = store if store is not None else Store(settings.db)
    state = AppState(
        settings=settings,
        store=store,
        clock=clock if clock is not None else SandboxClock(store),
        catalog=catalog if catalog is not None else Catalog(),
        authenticator=Authenticator(settings),
    )
    spec = load_spec()
    control_spec = load_spec(CONTROL_SPEC_PATH)
    # Error contexts, 404s and 405 `Allow` headers know the paths of both APIs.
    routes = {
        "paths": {
            **spec["paths"],
            **{CONTROL_BASE_PATH + p: item for p, item in control_spec["paths"].items()},
        }
    }
    app = connexion.AsyncApp(
        __name__,
        specification_dir=str(SPEC_PATH.parent),
        security_map=security_map(state.authenticator),
        swagger_ui_options=SwaggerUIOptions(swagger_ui_path="/ui"),
        jsonifier=OrjsonJsonifier(),
    )
    # The control API first: the contract's API is mounted at the root and would take its paths.
    app.add_api(
        CONTROL_SPEC_PATH.name,
        base_path=CONTROL_BASE_PATH,
        resolver=SnakeCaseResolver(Control(state)),
        pythonic_params=True,
        strict_validation=True,
        validate_responses=True,
        validator_map=validator_map(),
    )
    app.add_api(
        SPEC_PATH.name,
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
