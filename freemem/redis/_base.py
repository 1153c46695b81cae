"""What the sync and the async checkpointer share besides the plans: configuration and channel versions."""

from __future__ import annotations

import random
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.serde.base import SerializerProtocol

from freemem.redis.connection import describe, ensure_binary
from freemem.redis.keys import KeyLayout
from freemem.redis.plans import PlanContext, StoragePolicy

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
    ) -> None:
        super().__init__(serde=serde)
        ensure_binary(client)
        self.client = client
        self.owns_client = owns_client
        self.context = PlanContext(KeyLayout(key_prefix), StoragePolicy(ttl, refresh_on_read, keep_last))

    @property
    def key_prefix(self) -> str:
        return self.context.layout.prefix

    @property
    def policy(self) -> StoragePolicy:
        return self.context.policy

    def __repr__(self) -> str:
        policy = self.context.policy
        return (
            f"{type(self).__name__}({describe(self.client)!r}, key_prefix={self.key_prefix!r}, "
            f"ttl={policy.ttl!r}, keep_last={policy.keep_last!r})"
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
