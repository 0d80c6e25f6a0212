"""Which L1 namespaces changed, learnt from Redis instead of asked on every search.

L1 search runs over an in-process copy of a namespace, valid while the
namespace's version counter (`Keys.version`) is unchanged. Asking Redis
for the counter on every search costs a round trip, most of a search's
time on a busy host. Redis server-assisted client-side caching (`CLIENT
TRACKING`, Redis >= 6) removes it: the server remembers which version keys
our tracking connection read and, when one changes, pushes an
invalidation to our listener connection. Until one arrives, the copy is
known to be current.

Guarantees:

- Writes made through this process's HotTier are seen by its next search
  (they invalidate locally, before the write call returns).
- Writes by other processes are seen once their invalidation arrives
  (a push over loopback: typically well under a millisecond).
- If the listener's connection fails, every namespace counts as changed
  and the tracker stops (`healthy` is False): HotTier then validates
  with a GET on every search, as it does when `l1.cache = "validate"`.

Races: a generation number per namespace is read *before* the GET that
(re)starts tracking its key, and a cached copy is trusted only while the
generation is unchanged, so an invalidation that arrives while a GET is in
flight is never lost.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

import redis

log = logging.getLogger(__name__)

CHANNEL = "__redis__:invalidate"
POLL_S = 0.5  # how often the listener checks whether it should stop


def _resp2_connection(client: redis.Redis) -> Any:
    """A new connection like the client's, speaking RESP2.

    RESP2 delivers invalidations as plain pub/sub messages on the REDIRECT
    connection; under RESP3 (redis-py's default) they would be push frames.
    """
    pool = client.connection_pool
    return pool.connection_class(**{**pool.connection_kwargs, "protocol": 2})


class VersionTracker:
    """Generations of namespaces, bumped when their version key changes."""

    def __init__(self, client: redis.Redis) -> None:
        self._listener = _resp2_connection(client)
        self._reader = _resp2_connection(client)
        self._read_lock = threading.Lock()
        self._gen: dict[str, int] = {}
        self._gen_lock = threading.Lock()  # the listener and writers both bump
        self._ns_of_key: dict[bytes, str] = {}
        self._stop = threading.Event()
        self.healthy = True
        self.reads = 0  # version GETs issued (a search of an unchanged namespace adds none)
        try:
            self._listener.send_command("CLIENT", "ID")
            self.listener_id = int(self._listener.read_response())
            self._listener.send_command("SUBSCRIBE", CHANNEL)
            self._listener.read_response()
            self._reader.send_command("CLIENT", "TRACKING", "ON", "REDIRECT", self.listener_id)
            self._reader.read_response()
        except BaseException:
            self._disconnect()
            raise
        self._thread = threading.Thread(target=self._listen, name="tiermem-l1-tracking")
        self._thread.daemon = True
        self._thread.start()

    def generation(self, ns: str) -> int:
        """The namespace's generation: it moves whenever the namespace may have changed."""
        return self._gen.get(ns, 0)

    def read_version(self, ns: str, key: str) -> Any:
        """GET the version key on the tracking connection (so its changes are pushed)."""
        self._ns_of_key[key.encode()] = ns
        self.reads += 1
        with self._read_lock:
            try:
                self._reader.send_command("GET", key)
                return self._reader.read_response()
            except BaseException:
                # A reconnected reader would not be tracked: stop trusting copies.
                self.healthy = False
                raise

    def changed(self, namespaces: Iterable[str]) -> None:
        """Mark namespaces changed (this process just wrote to them)."""
        with self._gen_lock:
            for ns in namespaces:
                self._gen[ns] = self._gen.get(ns, 0) + 1

    def close(self) -> None:
        """Stop listening and close both connections."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=2 * POLL_S + 1)
        self._disconnect()

    def _disconnect(self) -> None:
        for conn in (self._reader, self._listener):
            conn.disconnect()

    def _listen(self) -> None:
        try:
            while not self._stop.is_set():
                if self._listener.can_read(timeout=POLL_S):
                    self._on_message(self._listener.read_response())
        except (redis.RedisError, OSError, ValueError) as exc:
            if not self._stop.is_set():
                log.warning("L1 invalidation listener stopped (%s); validating every search", exc)
        finally:
            self.healthy = False
            self.changed(list(self._gen))

    def _on_message(self, msg: Any) -> None:
        # RESP2 push: [b"message", b"__redis__:invalidate", [key, ...] or None (flush)].
        if not isinstance(msg, list) or len(msg) != 3 or msg[0] != b"message":
            return
        keys = msg[2]
        if keys is None:
            self.changed(list(self._gen))
            return
        self.changed(ns for k in keys if (ns := self._ns_of_key.get(k)) is not None)
