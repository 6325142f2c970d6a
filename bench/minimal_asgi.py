"""The reference: what retrieve and list cost in a minimal ASGI app on the same uvicorn.

`python bench/minimal_asgi.py --db FILE --port N` serves, from a sandbox's SQLite file (read
only, the test-mode namespace of the default account), with the sandbox's uvicorn settings
(uvloop, httptools, no access log, one worker):

  GET /vpp-participations/{id}           the path parameter checked against its schema and the
                                         response body (parsed again) against VppParticipation
  GET /vpp-participations?limit=N        `limit` checked, the page validated the same way
  GET /plain/vpp-participations/{id}     no validation at all
  GET /plain/vpp-participations?limit=N  no validation at all

Validation is jsonschema-rs, compiled once from the same spec (`validation.compiled`). No
authentication, no routing table, no error catalogue: a floor for "what Python can do", not a
server anyone should run.
"""

from __future__ import annotations

import argparse
import sqlite3
from typing import Any
from urllib.parse import parse_qs

import orjson
import uvicorn
from connexion.json_schema import resolve_refs

from vpp_sandbox import openapi
from vpp_sandbox.mock_server.validation import compiled

ACCOUNT = "acc_661677911f2197045e6cf1b1"
PREFIX = "/vpp-participations"


def build(db_path: str) -> Any:
    spec = resolve_refs(openapi.load(openapi.CONTRACT))
    schemas = spec["components"]["schemas"]
    check_id = compiled(schemas["ParticipationId"], "parameter")
    check_limit = compiled({"type": "integer", "minimum": 1, "maximum": 100}, "parameter")
    check_one = compiled(schemas["VppParticipation"], "response")
    check_page = compiled(schemas["VppParticipationList"], "response")
    assert check_id and check_limit and check_one and check_page
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, check_same_thread=False)
    json_headers = [(b"content-type", b"application/json")]

    async def send_json(send: Any, status: int, body: bytes) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*json_headers, (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                while True:
                    message = await receive()
                    if message["type"] == "lifespan.startup":
                        await send({"type": "lifespan.startup.complete"})
                    elif message["type"] == "lifespan.shutdown":
                        await send({"type": "lifespan.shutdown.complete"})
                        return
            return
        path: str = scope["path"]
        validate = True
        if path.startswith("/plain/"):
            validate, path = False, path[len("/plain") :]
        if path.startswith(PREFIX + "/"):
            pid = path[len(PREFIX) + 1 :]
            if validate and not check_id(pid):
                await send_json(send, 400, b'{"error":"participation_id"}')
                return
            row = db.execute(
                "SELECT body FROM participations WHERE id=? AND account_id=? AND live_mode=0",
                (pid, ACCOUNT),
            ).fetchone()
            if row is None:
                await send_json(send, 404, b'{"error":"not found"}')
                return
            body = row[0].encode()
            if validate and not check_one(orjson.loads(body)):
                await send_json(send, 500, b'{"error":"response"}')
                return
            await send_json(send, 200, body)
            return
        if path == PREFIX:
            query = parse_qs(scope["query_string"].decode())
            raw = query.get("limit", ["30"])[0]
            limit = int(raw) if raw.isdigit() else -1
            if validate and not check_limit(limit):
                await send_json(send, 400, b'{"error":"limit"}')
                return
            rows = db.execute(
                "SELECT body FROM participations WHERE account_id=? AND live_mode=0 "
                "ORDER BY time_created DESC, id DESC LIMIT ?",
                (ACCOUNT, limit + 1),
            ).fetchall()
            page = {
                "object": "list",
                "url": PREFIX,
                "has_more": len(rows) > limit,
                "data": [orjson.Fragment(r[0]) for r in rows[:limit]],
            }
            body = orjson.dumps(page)
            if validate and not check_page(orjson.loads(body)):
                await send_json(send, 500, b'{"error":"response"}')
                return
            await send_json(send, 200, body)
            return
        await send_json(send, 404, b'{"error":"no route"}')

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        build(args.db),
        host="127.0.0.1",
        port=args.port,
        workers=1,
        log_level="warning",
        loop="auto",
        http="auto",
        access_log=False,
        proxy_headers=False,
    )


if __name__ == "__main__":
    main()
