"""Lease plans: the opt-in per-thread writer lease (acquire, renew, release, who holds it); its design is in
:mod:`freemem.redis._base`."""

from __future__ import annotations

import time
from collections.abc import Callable

from freemem.core.errors import StoreError
from freemem.redis import scripts
from freemem.redis.plans.context import LEASE_BLOCK_S, LeasePolicy, PlanContext, as_text
from freemem.redis.protocol import Batch, Eval, Plan

__all__ = ["acquire_lease", "lease_holder", "release_lease", "renew_lease"]


def acquire_lease(
    ctx: PlanContext, thread_id: str, owner: str, lease: LeasePolicy, *, wait: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Plan[None]:
    """Take (or renew) the thread's writer lease for ``owner``, waiting up to ``wait`` seconds (default
    ``lease.wait``) while another owner holds it; :class:`StoreError` naming the thread and the holder then.

    Waiting blocks on the lease's wake list (a release wakes the writer at once) for at most what the holder's
    lease has left, so an expiring lease is retried when it expires; nothing assumes how fast anyone is."""
    now = clock
    layout = ctx.layout
    key, wake = layout.lease(thread_id), layout.lease_wake(thread_id)
    budget = lease.wait if wait is None else wait
    deadline = now() + budget
    while True:
        (reply,) = yield Batch(Eval(scripts.LEASE_ACQUIRE, (key,), (owner, lease.ttl_ms)))
        pttl, holder = int(reply[0]), as_text(reply[1])
        if pttl == 0:
            return
        left = deadline - now()
        if left <= 0:
            more = f" for {pttl / 1000:.1f} s more" if pttl > 0 else ""
            raise StoreError(f"thread {thread_id!r} is leased by another writer ({holder}){more}; this writer "
                             f"({owner}) waited {budget:g} s (lease_wait) and gives up")
        block = min(left, LEASE_BLOCK_S, pttl / 1000 if pttl > 0 else LEASE_BLOCK_S)
        yield Batch(("BLPOP", wake, f"{max(block, 0.01):.3f}"))


def renew_lease(ctx: PlanContext, thread_id: str, owner: str, lease: LeasePolicy) -> Plan[str | None]:
    """Renew ``owner``'s lease (or take it if free): None, or the other owner holding it."""
    (reply,) = yield Batch(Eval(scripts.LEASE_ACQUIRE, (ctx.layout.lease(thread_id),), (owner, lease.ttl_ms)))
    return None if int(reply[0]) == 0 else as_text(reply[1])


def release_lease(ctx: PlanContext, thread_id: str, owner: str, lease: LeasePolicy) -> Plan[bool]:
    """Release ``owner``'s lease and wake a waiting writer; False when ``owner`` did not hold it."""
    layout = ctx.layout
    (released,) = yield Batch(Eval(scripts.LEASE_RELEASE, (layout.lease(thread_id), layout.lease_wake(thread_id)),
                                   (owner, lease.ttl_ms)))
    return bool(released)


def lease_holder(ctx: PlanContext, thread_id: str) -> Plan[tuple[str | None, float]]:
    """Who holds the thread's lease and for how many seconds more (``(None, 0.0)`` when free)."""
    holder, pttl = yield Batch(("GET", ctx.layout.lease(thread_id)), ("PTTL", ctx.layout.lease(thread_id)))
    return (None, 0.0) if holder is None else (as_text(holder), max(0, int(pttl)) / 1000)


# -- maintenance -----------------------------------------------------------------------------------------------


