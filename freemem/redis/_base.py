"""What the sync and the async checkpointer share besides the plans: configuration, channel versions and the
bookkeeping of the opt-in writer lease.

Writer lease (``lease=True``). Two processes that run the same thread at once each read the newest
checkpoint, write children of it, and the newest checkpoint then holds only one of their turns: a lost update
(measured with ``freemem bench race``; SqliteSaver does the same, InMemorySaver within one process too). With
the lease, every writer of a thread first takes ``P:{T}:lease`` (``SET NX PX``, one key under the thread's hash
tag, so it works on a cluster) holding its owner token (host, PID and a per-saver id):

* **taken** when the saver reads a checkpoint of the thread with ``get_tuple`` -- every LangGraph run starts
  with that read, so a plain ``graph.invoke`` takes it before it sees the state it builds on -- and by any
  write made without it. A writer that finds it held waits (blocked on a wake list, woken by a release, or
  retrying when the holder's lease expires) up to ``lease_wait`` seconds, then fails with a
  :class:`~freemem.core.errors.StoreError` naming the thread and the holder;
* **renewed** by every read and write of the holder, inside the write's own transaction;
* **checked** by every write (the same script that writes): a writer whose lease was taken by another, or
  whose lease expired while another writer wrote the thread (its checkpoint's parent is no longer the newest),
  is refused with :class:`~freemem.redis.protocol.LeaseError` -- a clear error, never a silent fork;
* **released** by ``release(thread)``, at the end of a ``with saver.leased(thread):`` block (which also keeps
  it alive with a heartbeat however long a step takes, and excludes other threads of this process using the
  same saver), by ``close()``, or by expiry ``lease_ttl`` seconds after the holder's last read or write.

Without ``leased()``, a process keeps the lease between its turns until it expires, so another process's
turn waits up to ``lease_ttl`` after the holder's last write: wrap each turn in ``leased()`` for a prompt
hand-over.
All writers of a thread must opt in (a saver without ``lease=True`` ignores leases), and runs sharing one
saver object share its lease unless each runs inside ``leased()``. Read-only access (``get_state`` from a
dashboard, ``freemem thread show``) should use a saver without the lease, since reads take it.
"""

from __future__ import annotations

import os
import random
import socket
import threading
import uuid
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.serde.base import SerializerProtocol

from freemem.core.errors import ConfigError
from freemem.redis.connection import describe, ensure_binary
from freemem.redis.keys import KeyLayout
from freemem.redis.plans import Fence, LeasePolicy, PlanContext, StoragePolicy

__all__ = ["RedisSaverBase"]


class RedisSaverBase(BaseCheckpointSaver[str]):
    """Configuration common to :class:`RedisSaver` and :class:`AsyncRedisSaver`.

    Args:
        client: A redis-py client (``decode_responses=False``); see the subclasses for which kinds.
        key_prefix: Prefix of every key, one per tenant.
        ttl: Seconds a thread lives after its last write (``None``: forever).
        refresh_on_read: Re-arm the TTL when a checkpoint is read, too.
        keep_last: Keep only the newest N checkpoints per (thread, namespace), with their writes and the
            channel values they still reference (``None``: keep everything).
        serde: Serializer for checkpoints, metadata and values (``JsonPlusSerializer`` by default).
        owns_client: Close ``client`` when the saver is closed (``True`` when built by ``from_url``).
        lease: Take a per-thread writer lease so two writers of one thread never interleave (see the module
            docstring); ``False`` by default.
        lease_ttl: Seconds the lease lives after the holder's last read or write (default 30).
        lease_wait: Seconds a writer waits for another writer's lease before failing (default 60).
    """

    def __init__(
        self,
        client: Any,
        *,
        key_prefix: str = "freemem",
        ttl: float | None = None,
        refresh_on_read: bool = False,
        keep_last: int | None = None,
        serde: SerializerProtocol | None = None,
        owns_client: bool = False,
        lease: bool = False,
        lease_ttl: float = 30.0,
        lease_wait: float = 60.0,
    ) -> None:
        super().__init__(serde=serde)
        ensure_binary(client)
        self.client = client
        self.owns_client = owns_client
        self.context = PlanContext(KeyLayout(key_prefix), StoragePolicy(ttl, refresh_on_read, keep_last))
        self.lease_policy: LeasePolicy | None = LeasePolicy(lease_ttl, lease_wait) if lease else None
        #: This saver's identity as a lease holder (shown to writers that wait for it).
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self._held: set[str] = set()
        self._held_lock = threading.Lock()

    # -- writer lease bookkeeping (the I/O is in the shells) ----------------------------------------------------
    def _lease(self) -> LeasePolicy:
        if self.lease_policy is None:
            raise ConfigError(f"{type(self).__name__} was built without lease=True")
        return self.lease_policy

    def _holds(self, thread_id: str) -> bool:
        with self._held_lock:
            return thread_id in self._held

    def _mark_held(self, thread_id: str, held: bool) -> None:
        with self._held_lock:
            (self._held.add if held else self._held.discard)(thread_id)

    def _held_threads(self) -> list[str]:
        with self._held_lock:
            return sorted(self._held)

    def _fence(self) -> Fence:
        lease = self._lease()
        return Fence(self.owner, lease.ttl_ms)

    @property
    def key_prefix(self) -> str:
        return self.context.layout.prefix

    @property
    def policy(self) -> StoragePolicy:
        return self.context.policy

    def __repr__(self) -> str:
        policy = self.context.policy
        lease = "" if self.lease_policy is None else f", lease_ttl={self.lease_policy.ttl!r}"
        return (
            f"{type(self).__name__}({describe(self.client)!r}, key_prefix={self.key_prefix!r}, "
            f"ttl={policy.ttl!r}, keep_last={policy.keep_last!r}{lease})"
        )

    def get_next_version(self, current: str | int | None, channel: None = None) -> str:
        """Monotonic, sortable string versions (``"<counter:032>.<random:016>"``), like ``InMemorySaver``."""
        if current is None:
            current_v = 0
        elif isinstance(current, int):
            current_v = current
        else:
            current_v = int(str(current).split(".")[0])
        return f"{current_v + 1:032}.{random.random():016}"
