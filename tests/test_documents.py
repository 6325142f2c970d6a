"""Each stored participation is checked once, when it is written; reads check what is around it.

A document that breaks the spec is a 500 before anything is committed (create, update,
autopilot move, world load). Reads pass stored documents through unparsed, and still check the
envelope, and everything that is not a stored document, as Connexion did.
"""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from connexion.json_schema import resolve_refs

from tests.sandbox_client import ACCOUNT_A, make_sandbox, step
from tests.sandbox_time import timed_sandbox
from tests.stores import sync
from vpp_sandbox import openapi
from vpp_sandbox.mock_server import autopilot, lifecycle, participations, scenarios, validation
from vpp_sandbox.mock_server.clock import Namespace
from vpp_sandbox.mock_server.documents import (
    InvalidDocument,
    check_document,
    participation_schema,
)
from vpp_sandbox.mock_server.encoding import STORED_PLACEHOLDER, shape_of, stored
from vpp_sandbox.mock_server.handlers import Handlers
from vpp_sandbox.mock_server.lifecycle import Participation

NS = Namespace(ACCOUNT_A, False)


def broken(p: Participation) -> Participation:
    """A mock bug: the participation's location id no longer matches the spec's pattern."""
    return replace(p, location_id="somewhere")


def assert_internal_error(response: Any) -> None:
    assert response.status_code == 500, response.text
    body = response.json()
    assert body["object"] == "error"
    assert body["code"] == "internal_error"
    assert body["type"] == "api_error"
    assert "nothing was changed" in body["message"]


# -- written once ---------------------------------------------------------------------------


def test_a_valid_document_passes_and_a_broken_one_is_named() -> None:
    sb = make_sandbox()
    text = sync(sb.store.get_json(NS, sb.create().json()["id"]))
    check_document(text)
    document = orjson.loads(text)
    document["location_id"] = "somewhere"
    with pytest.raises(InvalidDocument) as caught:
        check_document(orjson.dumps(document))
    assert caught.value.participation_id == document["id"]
    assert "location_id" in caught.value.problem
    with pytest.raises(InvalidDocument):
        check_document(b"{not json")


def test_a_create_that_would_store_a_broken_document_is_a_500_and_stores_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made = lifecycle.new_participation  # what `participations` imported under that name
    monkeypatch.setattr(participations, "new_participation", lambda **kw: broken(made(**kw)))
    sb = make_sandbox()
    assert_internal_error(sb.create())
    assert sync(sb.store.count()) == 0


def test_an_update_that_would_store_a_broken_document_is_a_500_and_changes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sb = make_sandbox()
    pid = sb.create().json()["id"]
    before = sync(sb.store.get_json(NS, pid))
    applied = lifecycle.apply_update  # what `participations` imported under that name
    monkeypatch.setattr(
        participations, "apply_update", lambda *a, **kw: broken(applied(*a, **kw))
    )
    assert_internal_error(sb.update(pid, step("AWAITING_CUSTOMER_CONSENT")))
    assert sync(sb.store.get_json(NS, pid)) == before


def test_an_autopilot_move_that_would_store_a_broken_document_is_a_500_and_moves_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ts = timed_sandbox()
    pid = ts.sb.create().json()["id"]
    before = sync(ts.sb.store.get_json(NS, pid))
    moved = scenarios.advance  # what `autopilot` imported under that name
    monkeypatch.setattr(autopilot, "advance", lambda p, now: broken(moved(p, now)))
    ts.real.pass_(days=30)  # every step of the happy path is due
    assert_internal_error(ts.sb.get(pid))
    assert sync(ts.sb.store.get_json(NS, pid)) == before
    monkeypatch.setattr(autopilot, "advance", moved)
    assert ts.sb.get(pid).json()["current_state"] == "ACTIVE"  # caught up once fixed


def test_a_world_with_a_broken_document_is_not_loaded() -> None:
    sb = make_sandbox()
    good = sync(sb.store.get(NS, sb.create().json()["id"]))
    sync(sb.store.reset())
    others = [replace(good, id=f"vpp_{i:024x}", device_id=f"dev_{i:024x}") for i in range(3)]
    with pytest.raises(InvalidDocument):  # a row is checked as it is made, before any write
        sync(sb.store.load_rows(sb.store.row(p) for p in [*others, broken(others[0])]))
    assert sync(sb.store.count()) == 0
    sync(sb.store.load_rows(sb.store.row(p) for p in others))
    assert sync(sb.store.count()) == 3


# -- read without parsing again -------------------------------------------------------------


def test_a_read_passes_the_stored_document_through_unchecked(tmp_path: Path) -> None:
    """Proof that reads do not re-validate: a row changed behind the store's back is served."""
    db = str(tmp_path / "sandbox.db")
    sb = make_sandbox(db)
    pid = sb.create().json()["id"]
    document = orjson.loads(sync(sb.store.get_json(NS, pid)))
    document["location_id"] = "changed behind the store's back"
    with sqlite3.connect(db) as raw:
        text = orjson.dumps(document).decode()
        raw.execute("UPDATE participations SET body=? WHERE id=?", (text, pid))
    got = sb.get(pid)
    assert got.status_code == 200
    assert got.json() == document
    listed = sb.list()
    assert listed.status_code == 200
    assert listed.json()["data"] == [document]


def test_reads_check_the_envelope_but_not_the_stored_documents(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Spies: the answer's bytes are never parsed again; only their shape is checked."""
    parsed: list[bytes] = []
    shapes: list[object] = []
    real_parse = validation.ResponseCheck.parse
    real_problem = validation.ResponseCheck.problem

    def parse_spy(encoded: bytes) -> Any:
        parsed.append(encoded)
        return real_parse(encoded)

    def problem_spy(self: Any, data: Any, shape: Any, encoded: bytes) -> str | None:
        if shape is not None:
            shapes.append(shape)
        return real_problem(self, data, shape, encoded)

    monkeypatch.setattr(validation.ResponseCheck, "parse", staticmethod(parse_spy))
    monkeypatch.setattr(validation.ResponseCheck, "problem", problem_spy)
    sb = make_sandbox()
    pid = sb.create().json()["id"]
    assert sb.update(pid, step("AWAITING_CUSTOMER_CONSENT")).status_code == 200
    assert sb.get(pid).status_code == 200
    assert sb.list().status_code == 200
    assert [b for b in parsed if b"bearer_token" not in b] == []  # (logins are parsed)
    assert shapes[:3] == [STORED_PLACEHOLDER] * 3  # create, update, retrieve
    assert shapes[3] == {
        "object": "list",
        "url": "/vpp-participations",
        "has_more": False,
        "data": [STORED_PLACEHOLDER],
    }
    # Everything else is checked whole: the control API's clock.
    assert sb.client.get("/_sandbox/clock", headers=sb.headers()).status_code == 200
    assert len(parsed) == 2 and b"sandbox_clock" in parsed[1]


def _list_returning(body: Any) -> Any:
    async def list_vpp_participations(self: Handlers, facts: Any, **_: Any) -> Any:
        return body((await self.state.store.list_json(Namespace(ACCOUNT_A, False)))[0]), 200

    return list_vpp_participations


ENVELOPES = {
    "url": lambda items: {
        "object": "list", "url": "/elsewhere", "has_more": False,
        "data": [stored(i) for i in items],
    },
    "has_more": lambda items: {
        "object": "list", "url": "/vpp-participations", "has_more": "no",
        "data": [stored(i) for i in items],
    },
    "missing-field": lambda items: {
        "object": "list", "url": "/vpp-participations", "data": [stored(i) for i in items],
    },
    # a stored document where the spec has no participation
    "stored-in-the-wrong-place": lambda items: {
        "object": "list", "url": "/vpp-participations", "has_more": stored(items[0]),
        "data": [],
    },
    # a document that was never stored (so never checked) is checked whole
    "unstored-broken-item": lambda items: {
        "object": "list", "url": "/vpp-participations", "has_more": False,
        "data": [stored(items[0]), {**orjson.loads(items[0]), "location_id": "somewhere"}],
    },
}


@pytest.mark.parametrize("name", sorted(ENVELOPES))
def test_a_broken_envelope_is_still_a_500(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setattr(Handlers, "list_vpp_participations", _list_returning(ENVELOPES[name]))
    sb = make_sandbox()
    assert sb.create().status_code == 201
    assert_internal_error(sb.list())


def test_a_page_of_stored_and_unstored_valid_documents_is_checked_whole_and_passes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        Handlers,
        "list_vpp_participations",
        _list_returning(
            lambda items: {
                "object": "list",
                "url": "/vpp-participations",
                "has_more": False,
                "data": [stored(items[0]), orjson.loads(items[1])],
            }
        ),
    )
    sb = make_sandbox()
    assert sb.create().status_code == 201
    assert sb.create().status_code == 201
    assert sb.list().status_code == 200


# -- the shape the jsonifier leaves ---------------------------------------------------------


def test_the_shape_stands_for_stored_documents_only_when_the_json_is_the_data() -> None:
    doc = stored('{"a": 1}')
    assert shape_of({"data": [doc, 1, "x", None, True, 1.5]}) == {
        "data": [STORED_PLACEHOLDER, 1, "x", None, True, 1.5]
    }
    assert shape_of({"data": [1]}) is None  # nothing stored: the bytes are parsed as before
    assert shape_of({"n": Decimal("1.5"), "d": doc}) is None
    assert shape_of({"n": float("nan"), "d": doc}) is None  # orjson writes null
    assert shape_of({1: doc}) is None


def test_every_participation_answer_has_a_slot_for_stored_documents() -> None:
    spec = resolve_refs(openapi.load(openapi.CONTRACT))
    one: list[dict[str, Any]] = []
    for path, method, status in [
        ("/vpp-participations", "post", "201"),
        ("/vpp-participations/{participation_id}", "get", "200"),
        ("/vpp-participations/{participation_id}", "post", "200"),
    ]:
        response = spec["paths"][path][method]["responses"][status]
        one.append(response["content"]["application/json"]["schema"])
    page = spec["paths"]["/vpp-participations"]["get"]["responses"]["200"]["content"]
    page_schema = page["application/json"]["schema"]
    participation = participation_schema()
    for schema in one:
        check = validation.ResponseCheck(schema, participation).shaped
        assert check is not None
        assert check(STORED_PLACEHOLDER)
        assert not check({**STORED_PLACEHOLDER, "id": "vpp_" + "0" * 24})
    check = validation.ResponseCheck(page_schema, participation).shaped
    assert check is not None
    envelope = {"object": "list", "url": "/vpp-participations", "has_more": True}
    assert check({**envelope, "data": [STORED_PLACEHOLDER] * 30})
    assert not check({**envelope, "data": [STORED_PLACEHOLDER] * 101})  # maxItems still holds
    assert not check({**envelope, "data": [{}]})
    error = spec["components"]["schemas"]["Error"]
    assert validation.ResponseCheck(error, participation).shaped is None
