"""A fixed conversation with an in-process sandbox, printed as JSON (test_speedups.py runs it).

`python tests/speedups_transcript.py patched|refused`: with `refused`, the Connexion patches'
version guard says no (as on any Connexion but 3.3.0), so the app runs as Connexion ships.
Ids and clocks are fixed, so both runs must print the very same answers.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import sys
import warnings
from datetime import UTC, datetime
from typing import Any

warnings.filterwarnings("ignore")

from vpp_sandbox.mock_server import speedups  # noqa: E402

if sys.argv[1] == "refused":
    speedups.PATCHED_VERSION = "0.0.0-refused"

from vpp_sandbox.mock_server.app import create_app  # noqa: E402
from vpp_sandbox.mock_server.clock import SandboxClock  # noqa: E402
from vpp_sandbox.mock_server.settings import DEFAULT_ACCOUNT, Settings  # noqa: E402
from vpp_sandbox.mock_server.stores import open_store  # noqa: E402

NOW = datetime(2026, 11, 2, 9, 0, 0, tzinfo=UTC)
PROVIDER = "prv_8587fa49c7e5297ccc6c57e5"
PROGRAMME = "vpr_6a1f8e375db9de605baadd46"


def main() -> None:
    store = open_store(":memory:")
    app = create_app(Settings(db=":memory:"), store, clock=SandboxClock(store, lambda: NOW))
    counter = itertools.count(1)
    app.state.new_id = lambda: f"vpp_{next(counter):024x}"
    client = app.test_client()
    account = DEFAULT_ACCOUNT[0]
    token = client.get("/login", auth=(account.account_id, account.api_key)).json()
    auth = {"Authorization": f"Bearer {token['bearer_token']}"}
    out: list[Any] = [{"patched": speedups.install()}]

    def record(method: str, path: str, **kw: Any) -> Any:
        headers = {**auth, **kw.pop("headers", {})}
        r = client.request(method, path, headers=headers, **kw)
        try:
            body: Any = r.json()
        except ValueError:
            body = hashlib.sha256(r.content).hexdigest()
        kept = {k: r.headers[k] for k in ("content-type", "location", "allow") if k in r.headers}
        out.append([method, path, r.status_code, kept, body])
        return body

    device = "dev_" + "1" * 24
    new = {"device_id": device, "provider_id": PROVIDER, "programme_id": PROGRAMME}
    created = record("POST", "/vpp-participations", json=new)
    pid = created["id"]
    record("POST", "/vpp-participations", json=new)  # 409
    record("POST", "/vpp-participations", json={**new, "device_id": "nope"})
    record("POST", "/vpp-participations", json={**new, "extra": 1})
    record("POST", "/vpp-participations", content=b"{bad", headers={"Content-Type":
                                                                      "application/json"})
    record("POST", "/vpp-participations", content=b"x", headers={"Content-Type": "text/plain"})
    record("POST", "/vpp-participations", json={**new, "device_id": "dev_" + "2" * 24,
                                                "reference_id": "R2"})
    record("GET", f"/vpp-participations/{pid}")
    record("GET", "/vpp-participations/vpp_" + "f" * 24)
    record("GET", "/vpp-participations/not-an-id")
    record("GET", "/vpp-participations")
    record("GET", "/vpp-participations", params={"limit": 1})
    record("GET", "/vpp-participations", params={"limit": 1, "starting_after": pid})
    record("GET", "/vpp-participations", params={"limit": "x"})
    record("GET", "/vpp-participations", params={"limit": 0})
    record("GET", "/vpp-participations", params={"device_id": device})
    record("GET", "/vpp-participations", params={"starting_after": pid, "ending_before": pid})
    record("GET", "/vpp-participations", params={"colour": "red"})
    record("GET", "/vpp-participations?limit=1&limit=2")
    record("POST", f"/vpp-participations/{pid}",
           json={"participation_state": [{"state": "AWAITING_CUSTOMER_CONSENT",
                                          "status": "IN_PROGRESS"}]})
    record("POST", f"/vpp-participations/{pid}",
           json={"participation_state": [{"state": "ENROLMENT_REQUESTED",
                                          "status": "IN_PROGRESS"}]})
    record("POST", f"/vpp-participations/{pid}", json={"participation_state": []})
    record("PUT", f"/vpp-participations/{pid}", json={})
    record("DELETE", "/vpp-participations")
    record("GET", "/nowhere")
    record("GET", f"/vpp-participations/{pid}", headers={"Authorization": "Bearer nope"})
    record("GET", "/_sandbox/clock")
    record("POST", "/_sandbox/clock", json={"advance": "P1D"})
    record("POST", "/_sandbox/clock", json={"advance": "soon"})
    record("GET", f"/vpp-participations/{pid}")
    record("GET", "/openapi.json")
    record("GET", "/_sandbox/openapi.json")
    record("GET", "/ui/")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
