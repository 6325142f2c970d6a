"""The per-namespace rate limit's arithmetic: a token bucket, pure (the store keeps the bucket).

`rate` requests a second on average, in bursts of up to `rate` (at least one). The bucket is
a row in the store, read and written in one transaction under the namespace's lock
(`Store.update_rate_bucket`), so every process sharing the data counts against one bucket.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Bucket", "take"]


@dataclass(frozen=True, slots=True)
class Bucket:
    """Tokens left, as of `stamp` (wall-clock seconds)."""

    tokens: float
    stamp: float


def take(bucket: Bucket | None, rate: float, now: float) -> tuple[Bucket, float]:
    """The bucket after one request at `now`, and 0 if it may go ahead, else the seconds until
    a token is there (the request is then refused and takes nothing)."""
    capacity = max(1.0, rate)
    if bucket is None:
        bucket = Bucket(capacity, now)
    tokens = min(capacity, bucket.tokens + max(0.0, now - bucket.stamp) * rate)
    wait = 0.0 if tokens >= 1.0 else (1.0 - tokens) / rate
    if wait == 0.0:
        tokens -= 1.0
    return Bucket(tokens, max(now, bucket.stamp)), (wait if math.isfinite(wait) else 1.0)
