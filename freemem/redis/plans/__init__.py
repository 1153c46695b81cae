"""Command plans of the checkpointer: which keys to read and write for each operation, and how replies become
LangGraph objects. One implementation, executed by both :class:`~freemem.redis.RedisSaver` and
:class:`~freemem.redis.AsyncRedisSaver` (see :mod:`freemem.redis.protocol`).

Modules: :mod:`~freemem.redis.plans.context` (policies, ref cache, plan context, helpers),
:mod:`~freemem.redis.plans.checkpoints` (get, list, put, put_writes), :mod:`~freemem.redis.plans.threads`
(delete, prune, copy, TTL, size), :mod:`~freemem.redis.plans.leases` (the writer lease).

Round trips: ``get_tuple`` 1 (plain HGETALL + HMGET in MULTI/EXEC when this saver knows the checkpoint's
blob refs, else a script returns the checkpoint, its writes and its channel values) when this saver holds the
element records (messages) it references -- it holds those it wrote or read --, else +1 for the chunks and +1
for the elements; ``put`` 1 (MULTI/EXEC: plain HSETs of the element records and channel values and a script
for the rest; the run index joins it on a standalone server), ``put_writes`` 1 (MULTI/EXEC: HSETNX/HSET and a
small script), ``list`` 2 per page of checkpoints (+1 or 2 for element records, +1 per page of metadata when
filtering, +1 for the namespaces when none is given).
"""

from freemem.redis.plans.checkpoints import get_tuple, list_checkpoints, put, put_writes
from freemem.redis.plans.context import (
    DigestCache,
    ElementCache,
    ExpansionCache,
    Fence,
    LeasePolicy,
    PlanContext,
    RefCache,
    StoragePolicy,
    thread_id_of,
)
from freemem.redis.plans.leases import (
    acquire_lease,
    lease_holder,
    release_lease,
    renew_lease,
)
from freemem.redis.plans.threads import (
    copy_thread,
    delete_for_runs,
    delete_thread,
    memory_usage,
    prune,
    thread_keys,
    touch,
)

__all__ = [
    "DigestCache",
    "ElementCache",
    "ExpansionCache",
    "Fence",
    "LeasePolicy",
    "PlanContext",
    "RefCache",
    "StoragePolicy",
    "acquire_lease",
    "copy_thread",
    "delete_for_runs",
    "delete_thread",
    "get_tuple",
    "lease_holder",
    "list_checkpoints",
    "memory_usage",
    "prune",
    "put",
    "put_writes",
    "release_lease",
    "renew_lease",
    "thread_id_of",
    "thread_keys",
    "touch",
]
