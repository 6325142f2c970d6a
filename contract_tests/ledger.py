"""What the suite has seen so far: tokens, owners and views of participations (rules 9-15).

The ledger also holds the run's Coverage, so whatever goes through the checks is counted.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from vpp_sandbox.contract_tests.coverage import Coverage
from vpp_sandbox.contract_tests.target import Exchange

__all__ = [
    "Identity",
    "Known",
    "Ledger",
    "Observation",
    "Seen",
    "basic_credentials",
    "exchange_from_prepared",
    "operation_of",
    "participations_in",
]

VPP = "/vpp-participations"
# Sandbox control calls that empty a namespace (seen when the checks watch live traffic).
_EMPTYING = frozenset({"/_sandbox/reset", "/_sandbox/world"})


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a bearer token speaks for: the (account, mode) namespace."""

    account_id: str
    live_mode: bool


@dataclass(slots=True)
class Seen:
    """The suite's memory of one participation."""

    owner: Identity | None
    view: dict[str, Any]
    write: dict[str, Any] | None = None  # last create/update response (rule 10)
    rejected: bool = False  # last update was rejected: the next view must equal `view` (rule 12)


@dataclass(frozen=True, slots=True)
class Known:
    """A participation known to exist in the namespace (lists must show it: there is no
    delete)."""

    time_created: str
    id: str
    device_id: str


@dataclass(frozen=True, slots=True)
class Observation:
    """One exchange plus what was known before it: the single argument of every check."""

    exchange: Exchange
    identity: Identity | None
    before: Mapping[str, Seen] = field(default_factory=dict)
    # For lists: every participation known in the token's namespace before the exchange.
    namespace: tuple[Known, ...] = ()

    @property
    def operation(self) -> str:
        """createBearerToken, createVppParticipation, listVppParticipations, … or ``other``."""
        return operation_of(self.exchange.method, self.exchange.path)

    @property
    def path_id(self) -> str | None:
        if self.operation not in ("retrieveVppParticipation", "updateVppParticipation"):
            return None
        return self.exchange.path.rstrip("/").rsplit("/", 1)[1]

    def participations(self) -> Iterator[dict[str, Any]]:
        """Participation objects in a 2xx body (one, or each item of a list)."""
        if 200 <= self.exchange.status < 300:
            yield from participations_in(self.exchange.data)


def operation_of(method: str, path: str) -> str:
    """The spec's operationId of a request, or ``other`` (outside every operation)."""
    method, path = method.upper(), path.rstrip("/")
    if path == "/login" and method == "GET":
        return "createBearerToken"
    if path == VPP:
        return {"POST": "createVppParticipation", "GET": "listVppParticipations"}.get(
            method, "other"
        )
    if path.startswith(VPP + "/") and path.count("/") == 2:
        return {"GET": "retrieveVppParticipation", "POST": "updateVppParticipation"}.get(
            method, "other"
        )
    return "other"


def participations_in(data: Any) -> Iterator[dict[str, Any]]:
    if not isinstance(data, dict):
        return
    if data.get("object") == "vpp-participation" or "participation_state" in data:
        yield data
    elif isinstance(data.get("data"), list):
        for item in data["data"]:
            if isinstance(item, dict):
                yield item


class Ledger:
    """Thread-safe memory shared by every check of a run."""

    def __init__(self) -> None:
        self.tokens: dict[str, Identity] = {}
        self.objects: dict[str, Seen] = {}
        self.coverage = Coverage()
        self._lock = threading.Lock()
        self._cache: OrderedDict[int, tuple[object, Observation]] = OrderedDict()

    def add_token(self, token: str, identity: Identity) -> None:
        with self._lock:
            self.tokens[token] = identity

    def identity_of(self, headers: Mapping[str, str]) -> Identity | None:
        auth = _header(headers, "authorization")
        if not auth.startswith("Bearer "):
            return None
        return self.tokens.get(auth[len("Bearer ") :].strip())

    def identity_for(self, exchange: Exchange) -> Identity | None:
        """The namespace an exchange speaks for (its token's), as the checks judge it."""
        return self.identity_of(exchange.headers)

    def observe(self, exchange: Exchange, key: object | None = None) -> Observation:
        """Snapshot what was known, then learn from `exchange`; cached per response `key`."""
        with self._lock:
            if key is not None and id(key) in self._cache:
                held, obs = self._cache[id(key)]
                if held is key:
                    return obs
            identity = self.identity_for(exchange)
            obs = Observation(exchange, identity)
            ids = {str(p.get("id")) for p in obs.participations()} | {str(obs.path_id)}
            before = {i: _copy(self.objects[i]) for i in ids if i in self.objects}
            namespace: tuple[Known, ...] = ()
            if obs.operation == "listVppParticipations" and identity is not None:
                namespace = self._namespace(identity)
            obs = Observation(exchange, identity, before, namespace)
            self.coverage.saw(obs)
            self._learn(obs)
            if key is not None:
                self._cache[id(key)] = (key, obs)
                while len(self._cache) > 256:
                    self._cache.popitem(last=False)
            return obs

    def _namespace(self, identity: Identity) -> tuple[Known, ...]:
        out = []
        for pid, seen in self.objects.items():
            if seen.owner == identity:
                view = seen.view
                out.append(
                    Known(str(view.get("time_created")), pid, str(view.get("device_id")))
                )
        return tuple(out)

    def _learn(self, obs: Observation) -> None:
        op = obs.operation
        path = obs.exchange.path.rstrip("/")
        status = obs.exchange.status
        if path in _EMPTYING and obs.exchange.method.upper() == "POST" and 200 <= status < 300:
            # The sandbox's reset or world load replaced the namespace: forget what was in it.
            for gone in [k for k, v in self.objects.items() if v.owner == obs.identity]:
                del self.objects[gone]
            return
        if op == "createBearerToken" and obs.exchange.status == 200:
            data = obs.exchange.data
            creds = basic_credentials(_header(obs.exchange.headers, "authorization"))
            if isinstance(data, dict) and isinstance(data.get("bearer_token"), str) and creds:
                # The mode comes from the key, not from the answer (rule 9 checks the answer).
                live = creds[1].startswith("sk_live_")
                self.tokens[data["bearer_token"]] = Identity(creds[0], live)
            return
        writes = op in ("createVppParticipation", "updateVppParticipation")
        for p in obs.participations():
            pid = p.get("id")
            if not isinstance(pid, str):
                continue
            seen = self.objects.get(pid)
            if seen is None:
                self.objects[pid] = Seen(obs.identity, p, p if writes else None)
                continue
            if seen.owner is None:
                seen.owner = obs.identity
            if obs.identity is not None and seen.owner == obs.identity:
                seen.view = p
                seen.rejected = False
                if writes:
                    seen.write = p
        if op == "updateVppParticipation" and 400 <= obs.exchange.status < 500:
            pid = obs.path_id
            if pid in self.objects and self.objects[pid].owner == obs.identity:
                self.objects[pid].rejected = True


def _header(headers: Mapping[str, str], name: str) -> str:
    return next((v for k, v in headers.items() if k.lower() == name), "")


def _copy(seen: Seen) -> Seen:
    return Seen(seen.owner, seen.view, seen.write, seen.rejected)


def basic_credentials(header: str) -> tuple[str, str] | None:
    """(account id, API key) from an HTTP Basic `Authorization` value, or None."""
    if not header.startswith("Basic "):
        return None
    try:
        raw = base64.b64decode(header[len("Basic ") :]).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, key = raw.partition(":")
    return (user, key) if sep else None


def exchange_from_prepared(request: Any, response: Any, base_url: str) -> Exchange:
    """An Exchange from a `requests.PreparedRequest` and a Schemathesis response."""
    url = str(request.url)
    split = urlsplit(url)
    base_path = urlsplit(base_url).path.rstrip("/")
    path = split.path[len(base_path) :] if base_path and split.path.startswith(base_path) else (
        split.path
    )
    body: Any = None
    raw = request.body
    if raw:
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            body = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
    content = response.content or b""
    try:
        data = json.loads(content) if content else None
    except (ValueError, UnicodeDecodeError):
        data = None
    headers = {
        k: ", ".join(v) if isinstance(v, list) else str(v) for k, v in response.headers.items()
    }
    query = dict(parse_qsl(split.query, keep_blank_values=True))
    return Exchange(
        method=str(request.method),
        path=path,
        query=query,
        headers={k: str(v) for k, v in request.headers.items()},
        body=body,
        status=int(response.status_code),
        response_headers=headers,
        text=content.decode(errors="replace"),
        url=url,
        data=data,
    )
