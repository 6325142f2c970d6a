"""The async client beside the sync one: an `httpx.AsyncClient` logged in to a sandbox account."""

from __future__ import annotations

import httpx

from vpp_sandbox.client import TIMEOUT, SandboxCallError

__all__ = ["async_client"]


def async_client(base_url: str, token: str, *, raise_on_error: bool = True) -> httpx.AsyncClient:
    """An `httpx.AsyncClient` on `base_url` with the bearer token; like `SandboxSession`, an
    error answer raises `SandboxCallError` unless `raise_on_error=False`.

        async with vpp_account.async_client() as client:
            r = await client.get("/vpp-participations")
    """

    async def loud(response: httpx.Response) -> None:
        if response.status_code >= 400:
            await response.aread()
            request = response.request
            raise SandboxCallError(
                request.method, request.url.raw_path.decode(), response.status_code, response.text
            )

    return httpx.AsyncClient(
        base_url=base_url,
        headers={"Authorization": f"Bearer {token}"},
        timeout=TIMEOUT,
        event_hooks={"response": [loud]} if raise_on_error else {},
    )
