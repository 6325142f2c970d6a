"""Accounts: the configured ones and throwaway ones made on demand, their keys, who may do what.

An account made on demand (`POST /_sandbox/accounts`) gets a random id and a random test and
live key, answered once; the store keeps only SHA-256 digests of the keys (a shared sandbox's
data file holds no usable key). Its namespaces are like any other's. Who may create and delete
them is decided here: without an admin key anyone may create one (a local sandbox); with one,
creating needs it, and deleting needs it or the account's own bearer token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from vpp_sandbox.mock_server.lifecycle import format_time
from vpp_sandbox.mock_server.settings import Account
from vpp_sandbox.mock_server.store import AccountDeletion, AccountRecord

__all__ = [
    "AccountDeletion",
    "AccountError",
    "AccountRecord",
    "AccountStore",
    "Accounts",
    "Caller",
    "NewAccount",
    "key_digest",
]

_SEND_ADMIN_KEY = "Send Authorization: Bearer <admin key> (set with --admin-key or VPP_ADMIN_KEY)."


class AccountError(Exception):
    """A request about accounts that is refused; `code` names it in the error catalogue."""

    code = "internal_error"

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class AccountStore(Protocol):
    """The store's block of account methods (`mock_server.store.Store`)."""

    async def create_account(
        self, record: AccountRecord, *, admit: Callable[[int], bool]
    ) -> bool: ...

    async def delete_account(self, account_id: str, now: str) -> AccountDeletion | None: ...

    async def find_account_keys(self, account_id: str) -> AccountRecord | None: ...


@dataclass(frozen=True, slots=True)
class NewAccount:
    """A new account as answered once: its id and both keys in clear."""

    account_id: str
    test_key: str
    live_key: str
    time_created: str


@dataclass(frozen=True, slots=True)
class Caller:
    """Who calls the accounts endpoints: the admin, an account (by its token), or anyone."""

    admin: bool = False
    account_id: str | None = None


def key_digest(api_key: str) -> str:
    """The SHA-256 hex digest the store keeps instead of a key (keys are 128 random bits)."""
    return hashlib.sha256(api_key.encode()).hexdigest()


class Accounts:
    """Every account that may log in: configured (settings, worlds) or made on demand (store)."""

    def __init__(
        self,
        configured: Iterable[Account],
        store: AccountStore | None = None,
        *,
        admin_key_set: bool = False,
        limit: int = 1000,
    ) -> None:
        self._configured = tuple(configured)
        self._configured_ids = frozenset(a.account_id for a in self._configured)
        self._configured_namespaces = frozenset(
            (a.account_id, a.live_mode) for a in self._configured
        )
        self._store = store
        self.admin_key_set = admin_key_set
        self.limit = limit

    # -- lookups (every login and every token) ----------------------------------------------

    async def opens(self, account_id: str, live_mode: bool) -> bool:
        """A key of the account opens this mode, so its tokens are good (False once deleted).

        A configured account opens the modes it has keys for; one made on demand has both.
        """
        if account_id in self._configured_ids:
            return (account_id, live_mode) in self._configured_namespaces
        if self._store is None:
            return False
        return await self._store.find_account_keys(account_id) is not None

    async def find(self, account_id: str, api_key: str) -> Account | None:
        """The account whose id and key match, or None; compared in constant time."""
        found = None
        for account in self._configured:
            same_id = hmac.compare_digest(account.account_id.encode(), account_id.encode())
            same_key = hmac.compare_digest(account.api_key.encode(), api_key.encode())
            if same_id and same_key:
                found = account
        if found is not None or self._store is None:
            return found
        record = await self._store.find_account_keys(account_id)
        if record is None:
            return None
        live = api_key.startswith("sk_live_")
        expected = record.live_key_sha256 if live else record.test_key_sha256
        if hmac.compare_digest(expected.encode(), key_digest(api_key).encode()):
            return Account(record.account_id, api_key)
        return None

    # -- on demand -------------------------------------------------------------------------

    async def create(self, caller: Caller, now: datetime) -> NewAccount:
        """A new account with random keys, if the caller may make one and the cap allows it."""
        if self.admin_key_set and not caller.admin:
            raise AccountError(
                "admin_key_required",
                "This sandbox is shared: creating accounts needs its admin key, not an "
                f"account's token. {_SEND_ADMIN_KEY}",
            )
        if self._store is None:  # pragma: no cover - create_app always gives a store
            raise AccountError("internal_error", "This server keeps no accounts.")
        account_id = "acc_" + secrets.token_hex(12)
        made = NewAccount(
            account_id=account_id,
            test_key="sk_test_" + secrets.token_hex(16),
            live_key="sk_live_" + secrets.token_hex(16),
            time_created=format_time(now),
        )
        record = AccountRecord(
            account_id, key_digest(made.test_key), key_digest(made.live_key), made.time_created
        )
        if not await self._store.create_account(record, admit=lambda kept: kept < self.limit):
            raise AccountError(
                "account_limit_reached",
                f"This sandbox already holds its maximum of {self.limit} accounts made on demand. "
                "Delete the ones you no longer need (DELETE /_sandbox/accounts/{account_id}), or "
                "restart the sandbox with a higher --max-accounts (VPP_MAX_ACCOUNTS).",
            )
        return made

    async def delete(self, caller: Caller, account_id: str, now: datetime) -> AccountDeletion:
        """Delete an account made on demand with everything in it: admin or the account itself.

        A deletion a crash interrupted is finished by the next one (the store keeps a record
        of it), so a repeated DELETE leaves nothing behind."""
        self.may_delete(caller, account_id)
        deleted = None
        if self._store is not None:
            deleted = await self._store.delete_account(account_id, format_time(now))
        if deleted is None:
            raise AccountError(
                "account_not_found",
                f"No account {account_id} made on demand on this sandbox (it may have been "
                "deleted already). Check the id that POST /_sandbox/accounts answered.",
            )
        return deleted

    def may_delete(self, caller: Caller, account_id: str) -> None:
        """An AccountError unless `caller` may delete `account_id` (whether or not it exists)."""
        if not caller.admin:
            if caller.account_id is None:
                raise AccountError(
                    "authentication_required",
                    "To delete an account send its own bearer token (GET /login with one of its "
                    "keys) as Authorization: Bearer <token>, or the sandbox's admin key.",
                )
            if caller.account_id != account_id:
                # The same answer whether or not the other account exists: nothing is leaked.
                raise AccountError(
                    "account_forbidden",
                    f"A token of {caller.account_id} may delete only {caller.account_id}. Use a "
                    f"token of {account_id}, or the sandbox's admin key.",
                )
        if account_id in self._configured_ids:
            raise AccountError(
                "account_not_deletable",
                f"{account_id} is configured at start-up (--account, VPP_ACCOUNTS, a world or "
                "the default account), not made on demand, so it cannot be deleted. POST "
                "/_sandbox/reset empties one of its namespaces instead.",
            )
