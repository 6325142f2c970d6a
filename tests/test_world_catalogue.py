"""The ids a loaded world knows are its namespace's own: they name that namespace's new
participations only, are replaced by its next load and go with its reset, so the catalogue
neither leaks between tenants nor grows with every seed."""

from __future__ import annotations

from typing import Any

from tests.sandbox_client import ACCOUNT_A, ACCOUNT_B, Sandbox, make_sandbox, new_id
from tests.stores import sync
from vpp_sandbox.fixtures.worlds import build

DEMO = build("demo")
PROVIDER = DEMO.catalogue().provider_parties()[0]
PROGRAMME = DEMO.catalogue().programme_parties()[0]


def _load(sb: Sandbox, account_id: str = ACCOUNT_A, **body: Any) -> None:
    r = sb.client.post("/_sandbox/world", json=body, headers=sb.headers(account_id))
    assert r.status_code == 200, r.text


def _names(sb: Sandbox, account_id: str = ACCOUNT_A) -> tuple[str, str]:
    r = sb.create(account_id, provider_id=PROVIDER.id, programme_id=PROGRAMME.id)
    assert r.status_code == 201, r.text
    p = r.json()
    return p["provider"]["provider_display_name"], p["programme"]["programme_display_name"]


def _rows(sb: Sandbox) -> int:
    """Every catalogue row the store keeps, in whichever tables hold them (SQLite)."""

    async def count() -> int:
        total = 0
        async with sb.store._read() as tx:
            tables = await tx.fetchall(
                "SELECT name FROM sqlite_master WHERE type='table' AND name LIKE '%catalog%'"
            )
            for (table,) in tables:
                row = await tx.fetchone(f"SELECT COUNT(*) FROM {table}")
                total += int(row[0]) if row else 0
        return total

    return sync(count())


def test_one_tenants_world_names_only_its_own_new_participations() -> None:
    sb = make_sandbox()
    derived = _names(sb, ACCOUNT_B)
    assert derived != (PROVIDER.display_name, PROGRAMME.display_name)
    _load(sb, world="demo")
    assert _names(sb) == (PROVIDER.display_name, PROGRAMME.display_name)
    # Another tenant's new participations keep the names derived from the ids.
    assert _names(sb, ACCOUNT_B) == derived
    # A reset forgets what the world knew.
    assert sb.client.post("/_sandbox/reset", headers=sb.headers()).status_code == 200
    assert _names(sb) == derived
    assert _rows(sb) == 0


def test_the_catalogue_does_not_grow_with_every_seed() -> None:
    sb = make_sandbox()
    _load(sb, world="load", size=40, seed=1)
    one = _rows(sb)
    assert one > 0
    for seed in range(2, 6):
        _load(sb, world="load", size=40, seed=seed)
    assert _rows(sb) <= one * 1.5  # one world's ids, not five
    # The load of another device id is its own again (the last world's).
    assert sb.create(device_id=new_id("dev")).status_code == 201
