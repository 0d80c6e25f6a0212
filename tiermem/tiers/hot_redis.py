"""Redis plumbing of L1 (`tiers/hot.py`): its errors as `TierUnavailable`,
reply items as str, batches of `BATCH` records, and work sent now and
finished later (`Later`)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Generic, ParamSpec, TypeVar

import redis

from tiermem.errors import TierUnavailable
from tiermem.tiers import resp

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

BATCH = 1000  # records per MULTI/EXEC, pipelined read or script call (tests patch it here)


def chunks(seq: Sequence[T]) -> Iterator[Sequence[T]]:
    """`seq` in slices of `BATCH` items (read at each call)."""
    for i in range(0, len(seq), BATCH):
        yield seq[i : i + BATCH]


@contextmanager
def redis_errors(url: str) -> Iterator[None]:
    """Translate redis-py errors raised inside into `TierUnavailable`."""
    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        raise TierUnavailable(
            f"L1 Redis at {url} is unreachable: {exc}. Start Redis there, fix l1.url, "
            "or leave l1.url unset to use the embedded Redis."
        ) from exc
    except redis.exceptions.RedisError as exc:
        raise TierUnavailable(f"L1 Redis at {url} failed: {exc}") from exc


def guarded(fn: Callable[P, R]) -> Callable[P, R]:
    """Method decorator: run under `redis_errors(self.url)`."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with redis_errors(args[0].url):  # type: ignore[attr-defined]
            return fn(*args, **kwargs)

    return wrapper


def as_str(value: Any) -> str:
    """A Redis reply item as str (the client returns bytes)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def as_strs(reply: Any) -> list[str]:
    """Each item of a Redis reply as str."""
    return [as_str(v) for v in reply]


class Later(Generic[T]):
    """Redis work already sent (`resp.Pending`s, or `resp.ScriptsSent`s), finished by
    `wait`: `finish` of each pending's replies. `cancel` gives up on whatever was not
    read."""

    def __init__(
        self,
        url: str,
        pending: Sequence[resp.Pending | resp.ScriptsSent],
        finish: Callable[[list[list[Any]]], T],
    ) -> None:
        self.url = url
        self.pending = list(pending)
        self.finish = finish

    def wait(self) -> T:
        try:
            with redis_errors(self.url):
                return self.finish([p.wait() for p in self.pending])
        finally:
            self.cancel()  # after a failure, the rest of the replies are not wanted

    def cancel(self) -> None:
        for p in self.pending:
            p.cancel()
