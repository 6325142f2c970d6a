"""An upstream's answer read within a bound on its decoded size, so a gzip bomb stops at the cap.

The proxy forwards the answer's bytes as they came and judges what they decode to. Both are
bounded by the same limit: the raw bytes as they arrive, the decoded ones as they are
decoded, each step of zlib asked for at most what is left of the limit (plus one byte, to see
that the limit is passed), so a 1 MiB gzip answer that would inflate to 1 GiB costs at most
the limit. Only the codings zlib can decode that way are read (gzip, deflate); the proxy
narrows a request's Accept-Encoding to them (`accept_encoding`), and an answer in another
coding is refused (`UnsupportedCoding`).
"""

from __future__ import annotations

import zlib
from typing import Protocol

__all__ = [
    "DECODABLE",
    "BoundedBody",
    "TooLarge",
    "Undecodable",
    "UnsupportedCoding",
    "accept_encoding",
]

# Content codings the proxy decodes within a bound (RFC 9110 §8.4.1; x-gzip is gzip).
DECODABLE = frozenset({"gzip", "x-gzip", "deflate", "identity"})


class TooLarge(Exception):
    """The answer, as sent or decoded, is over the limit."""


class UnsupportedCoding(Exception):
    """The answer is in a content coding the proxy cannot decode within a bound."""

    def __init__(self, coding: str) -> None:
        super().__init__(coding)
        self.coding = coding


class Undecodable(Exception):
    """The answer does not decode as its Content-Encoding says (it is passed on, unjudged)."""


class _Step(Protocol):
    def decode(self, data: bytes) -> bytes: ...

    def finish(self) -> bytes: ...


class _Zlib:
    """One zlib stream (gzip or deflate) whose output never passes `limit` bytes."""

    def __init__(self, wbits: int, limit: int) -> None:
        self.wbits = wbits
        self.limit = limit
        self.out = 0
        self.started = False
        self.decompressor = zlib.decompressobj(wbits)

    def decode(self, data: bytes) -> bytes:
        if self.decompressor.eof:
            return b""  # what follows a complete stream is not part of it
        try:
            piece = self.decompressor.decompress(data, self.limit - self.out + 1)
        except zlib.error as exc:
            if self.started or self.wbits != zlib.MAX_WBITS:
                raise Undecodable(str(exc)) from None
            # "deflate" is meant to be zlib-wrapped (RFC 9110 §8.4.1.2); some servers send
            # the raw stream, which clients accept too.
            self.wbits = -zlib.MAX_WBITS
            self.decompressor = zlib.decompressobj(self.wbits)
            return self.decode(data)
        self.started = True
        return self._counted(piece)

    def finish(self) -> bytes:
        try:
            return self._counted(self.decompressor.flush())
        except zlib.error as exc:
            raise Undecodable(str(exc)) from None

    def _counted(self, piece: bytes) -> bytes:
        # Bounded by max_length, the output stops one byte past the limit: input left over
        # (unconsumed_tail) can only mean the limit was passed.
        self.out += len(piece)
        if self.out > self.limit:
            raise TooLarge
        return piece


class BoundedBody:
    """The raw answer (`raw`) and what it decodes to (`decoded`), each at most `limit` bytes."""

    def __init__(self, content_encoding: str, limit: int) -> None:
        self.limit = limit
        codings = [c.strip().lower() for c in content_encoding.split(",") if c.strip()]
        unknown = [c for c in codings if c not in DECODABLE]
        if unknown:
            raise UnsupportedCoding(unknown[0])
        # Codings are listed in the order they were applied: undone last first.
        self.steps: list[_Step] = [
            _Zlib(16 + zlib.MAX_WBITS if c in ("gzip", "x-gzip") else zlib.MAX_WBITS, limit)
            for c in reversed(codings)
            if c != "identity"
        ]
        self._raw: list[bytes] = []
        self._decoded: list[bytes] = []
        self.raw_size = 0
        self.decoded_size = 0
        self.problem: str | None = None  # why the body could not be decoded (it is kept raw)

    @property
    def size(self) -> int:
        """The larger of the sizes so far, raw or decoded."""
        return max(self.raw_size, self.decoded_size)

    def feed(self, chunk: bytes) -> None:
        self.raw_size += len(chunk)
        if self.raw_size > self.limit:
            raise TooLarge
        self._raw.append(chunk)
        if not self.steps:
            self.decoded_size = self.raw_size
            return
        if self.problem is None:
            self._decode(chunk, 0)

    def finish(self) -> None:
        """The end of the answer: what the decoders still held."""
        for index, step in enumerate(self.steps):
            if self.problem is not None:
                return
            try:
                tail = step.finish()
            except Undecodable as exc:
                self.problem = str(exc)
                return
            if tail:
                self._decode(tail, index + 1)

    def _decode(self, data: bytes, first: int) -> None:
        try:
            for step in self.steps[first:]:
                data = step.decode(data)
        except Undecodable as exc:
            self.problem = str(exc)
            self._decoded.clear()
            return
        self.decoded_size += len(data)
        if self.decoded_size > self.limit:
            raise TooLarge
        self._decoded.append(data)

    @property
    def raw(self) -> bytes:
        """The answer as sent (joined once: it is read for the client, the HAR and the checks)."""
        if len(self._raw) > 1:
            self._raw = [b"".join(self._raw)]
        return self._raw[0] if self._raw else b""

    @property
    def decoded(self) -> bytes | None:
        """The decoded answer; None when it did not decode."""
        if self.problem is not None:
            return None
        if not self.steps:
            return self.raw
        if len(self._decoded) > 1:
            self._decoded = [b"".join(self._decoded)]
        return self._decoded[0] if self._decoded else b""


def accept_encoding(value: str) -> str:
    """A request's Accept-Encoding with only the codings the proxy decodes within a bound
    (`*` too is dropped: it would let the upstream choose another); `identity` if none is left."""
    kept = []
    for item in value.split(","):
        coding = item.split(";", 1)[0].strip().lower()
        if coding in DECODABLE:
            kept.append(item.strip())
    return ", ".join(kept) or "identity"
