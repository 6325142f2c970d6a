"""`vpp-sandbox proxy --har FILE`: every exchange through the proxy as a HAR 1.2 log."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from tests.contract_defects import build
from tests.test_contract_proxy import VPP, _create_body, _proxy, _token, call


def test_the_proxy_writes_every_exchange_as_har_with_no_secret(tmp_path: Path) -> None:
    har = tmp_path / "traffic.har"
    proxy = _proxy(build(None), har=str(har))

    async def scenario() -> str:
        token = await _token(proxy)
        auth = ("Authorization", f"Bearer {token}")
        made = await call(proxy, "POST", VPP, body=_create_body(),
                          headers=[auth, ("Content-Type", "application/json")])  # fmt: skip
        assert made.status == 201, made.body
        missing = await call(proxy, "GET", VPP + "/vpp_" + "0" * 24, headers=[auth])
        assert missing.status == 404
        await proxy.aclose()
        return token

    token = asyncio.run(scenario())
    text = har.read_text()
    assert token not in text and "sk_test_" not in text
    log = json.loads(text)["log"]
    assert log["version"] == "1.2"
    seen = [(e["request"]["method"], e["request"]["url"], e["response"]["status"])
            for e in log["entries"]]  # fmt: skip
    assert seen == [
        ("GET", "http://upstream/login", 200),
        ("POST", "http://upstream" + VPP, 201),
        ("GET", "http://upstream" + VPP + "/vpp_" + "0" * 24, 404),
    ]
    created, missing = log["entries"][1], log["entries"][2]
    assert json.loads(created["request"]["postData"]["text"]) == json.loads(_create_body())
    assert json.loads(created["response"]["content"]["text"])["current_state"] == (
        "ENROLMENT_REQUESTED"
    )
    assert json.loads(missing["response"]["content"]["text"])["code"] == "participation_not_found"
    assert {"name": "authorization", "value": "Bearer $VPP_TOKEN"} in created["request"]["headers"]
