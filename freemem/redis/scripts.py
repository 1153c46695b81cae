"""Lua scripts: the multi-key steps that must be atomic, each one round trip.

Every script touches the keys of exactly one thread (one hash tag, so one cluster slot). The first key passed
is always one of that thread's keys, which is what Redis Cluster routes the call by; keys derived inside a
script (a checkpoint key from its id) share the hash tag, hence the slot.

TTL handling (``refresh``) keeps a whole thread alive for at least ``ttl`` after its last write, without
touching every key on every write: a write re-arms the keys it touched and the registry; every other key is
re-armed by a *full refresh* at most once per ``slack`` (a marker key with a ``slack`` lifetime says one ran
recently). Every key therefore expires between ``ttl`` and ``ttl + slack`` after the thread's last write
(or read, with ``refresh_on_read``), and the registry, re-armed on every write, always outlives the keys it
lists. Archive keys that already have a TTL are extended (``GT``) by a full refresh as well.

Reference counting of element records (``P:{T}:m:N``, see :mod:`~freemem.redis.codec`): ``P:{T}:mc:N`` holds,
per element digest, how many stored records -- channel values in ``b:N`` and pending writes in ``c:N:C`` --
reference it. A reference record is written only by a script, with ``HSETNX``, and its digests are counted
only when that write created it (a retried put counts nothing twice); dropping a checkpoint (``keep_last``,
``prune``, ``delete_for_runs``) uncounts the records it deletes and deletes the element records no longer
referenced. ``delete_thread`` and the TTL treat the two hashes like every other key of the thread.
"""

from __future__ import annotations

from freemem.redis.protocol import Script

__all__ = [
    "ARCHIVE_MARK",
    "INDEX_VERSION",
    "MAX_PASSAGES",
    "ARCHIVE_RECORD",
    "ARCHIVE_SEARCH",
    "DELETE_THREAD",
    "DROP",
    "EXPORT",
    "IMPORT",
    "LEASE_ACQUIRE",
    "LEASE_RELEASE",
    "LOAD",
    "PUT",
    "PUT_LEASED",
    "PUT_WRITES",
    "PUT_WRITES_LEASED",
    "REFRESH",
]

INDEX_VERSION = "3"
"""The archive's search index format (``v`` in its stats hash): the scripts rebuild an index of another."""

MAX_PASSAGES = 1 << 24
"""Passage numbers a thread's search index can give (3 bytes in a posting)."""


def _with_index_constants(source: str) -> str:
    """``source`` with the index format and the passage bound written in (one definition, here)."""
    return (source.replace("@INDEX_VERSION@", INDEX_VERSION).replace("@MAX_PASSAGES@", str(MAX_PASSAGES))
            .replace("@MAX_PASSAGES_TEXT@", f"{MAX_PASSAGES:,}"))


_PRELUDE = r"""
local function refresh(reg, marker, ttl, slack, touched)
  if ttl <= 0 then return end
  local exp = ttl + slack
  for i = 1, #touched do redis.call('PEXPIRE', touched[i], exp) end
  if redis.call('EXISTS', marker) == 1 then return end
  local members = redis.call('SMEMBERS', reg)
  for i = 1, #members do redis.call('PEXPIRE', members[i], exp) end
  redis.call('PEXPIRE', reg, exp)
  local base = string.sub(reg, 1, -4)
  for _, suffix in ipairs({'a:ev', 'a:e', 'a:s', 'a:r', 'a:x:t', 'a:x:d', 'a:x:e', 'a:x:n', 'a:x:l'}) do
    redis.call('PEXPIRE', base .. suffix, exp, 'GT')
  end
  redis.call('SET', marker, '1', 'PX', slack)
end

local function hmget_all(key, fields)
  local out = {}
  for i = 1, #fields, 500 do
    local part = redis.call('HMGET', key, unpack(fields, i, math.min(i + 499, #fields)))
    for j = 1, #part do out[#out + 1] = part[j] end
  end
  return out
end

-- The element digests a stored record references: none unless its type (the next-to-last of its packed parts,
-- see codec.pack) is 'freemem.refs', whose data (the last part) is 16-byte digests.
local REFS = 'freemem.refs'
local function record_refs(raw)
  local out = {}
  if not raw or #raw < 1 then return out end
  local n = string.byte(raw, 1)
  if n < 2 or #raw < 1 + 4 * n then return out end
  local lens, at = {}, 2
  for i = 1, n do lens[i], at = struct.unpack('>I4', raw, at) end
  if lens[n - 1] ~= #REFS then return out end
  local offset = 1 + 4 * n
  for i = 1, n - 2 do offset = offset + lens[i] end
  if string.sub(raw, offset + 1, offset + #REFS) ~= REFS then return out end
  local start = offset + #REFS + 1
  for i = start, start + lens[n] - 1, 16 do out[#out + 1] = string.sub(raw, i, i + 15) end
  return out
end

local function count_refs(counts, raw)
  for _, d in ipairs(record_refs(raw)) do redis.call('HINCRBY', counts, d, 1) end
end

-- Uncount what a deleted record referenced; an element no longer referenced is deleted, and when it was a
-- chunk (a reference record itself) what it referenced is uncounted in turn.
local function uncount_refs(elements, counts, raw)
  for _, d in ipairs(record_refs(raw)) do
    if redis.call('HINCRBY', counts, d, -1) <= 0 then
      redis.call('HDEL', counts, d)
      local inner = nil
      if redis.call('HSTRLEN', elements, d) <= 4096 then inner = redis.call('HGET', elements, d) end
      redis.call('HDEL', elements, d)
      if inner then uncount_refs(elements, counts, inner) end
    end
  end
end

-- HSETNX pairs of ARGV from index ``at`` (``n`` pairs of field, record) into ``key``; the digests of each record
-- this creates are counted. Returns how many it created.
local function set_counted(key, counts, at, n)
  local created = 0
  for i = at, at + 2 * n - 1, 2 do
    if redis.call('HSETNX', key, ARGV[i], ARGV[i + 1]) == 1 then
      count_refs(counts, ARGV[i + 1])
      created = created + 1
    end
  end
  return created
end

local function drop_checkpoints(reg, idx, blobs, prefix, victims, kept, elements, counts)
  local counted = redis.call('EXISTS', counts) == 1
  local keep = {}
  for i = 1, #kept do
    local r = redis.call('HGET', prefix .. kept[i], 'r')
    if r then for _, f in ipairs(cjson.decode(r)) do keep[f] = true end end
  end
  local drop, seen = {}, {}
  for i = 1, #victims do
    local key = prefix .. victims[i]
    local r = redis.call('HGET', key, 'r')
    if r then
      for _, f in ipairs(cjson.decode(r)) do
        if not keep[f] and not seen[f] then seen[f] = true; drop[#drop + 1] = f end
      end
    end
    if counted then
      for _, f in ipairs(redis.call('HKEYS', key)) do
        if string.sub(f, 1, 2) == 'w:' then uncount_refs(elements, counts, redis.call('HGET', key, f)) end
      end
    end
    redis.call('DEL', key)
    redis.call('SREM', reg, key)
    redis.call('ZREM', idx, victims[i])
  end
  if counted then
    for i = 1, #drop do uncount_refs(elements, counts, redis.call('HGET', blobs, drop[i])) end
  end
  for i = 1, #drop, 500 do
    redis.call('HDEL', blobs, unpack(drop, i, math.min(i + 499, #drop)))
  end
  return #victims
end
"""

_LEASE_GUARD = r"""
-- Writer lease (opt-in): a write proves it may write the thread. It may if it holds the lease, or if the
-- lease is free and (for a checkpoint, ``check_parent``) nobody wrote since the writer read the thread: the
-- checkpoint's parent is still the newest of its namespace. It then (re)takes the lease for ``lease_ttl``.
local function lease_guard(lease, owner, lease_ttl, thread, index, parent)
  local holder = redis.call('GET', lease)
  if holder ~= owner then
    if holder then
      return 'FREEMEM_LEASE thread ' .. thread .. ' is leased by another writer (' .. holder .. '); this writer ' ..
        '(' .. owner .. ') lost its lease (expired after ' .. lease_ttl .. ' ms without a write) and must not write'
    end
    if index then
      local newest = redis.call('ZRANGE', index, 0, 0, 'REV')[1] or ''
      if newest ~= parent then
        return 'FREEMEM_LEASE thread ' .. thread .. ' was written by another writer after this writer (' ..
          owner .. ') lost its lease: its checkpoint would fork from ' .. (parent == '' and 'nothing' or parent) ..
          ' while the newest is ' .. newest .. '; run the turn again'
      end
    end
  end
  redis.call('SET', lease, owner, 'PX', lease_ttl)
  return nil
end
"""

_PUT_BODY = r"""
redis.call('HSET', KEYS[5], 'cp', ARGV[7], 'md', ARGV[8], 'p', ARGV[9], 'r', ARGV[10], 'run', ARGV[11])
redis.call('ZADD', KEYS[3], 0, ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
local nchunks = tonumber(ARGV[refs_at])
set_counted(KEYS[7], KEYS[8], refs_at + 1, nchunks)
local nrefs = tonumber(ARGV[refs_at + 1 + 2 * nchunks])
set_counted(KEYS[4], KEYS[8], refs_at + 2 + 2 * nchunks, nrefs)
if nchunks + nrefs > 0 then redis.call('SADD', KEYS[1], KEYS[7], KEYS[8]) end
local keep = tonumber(ARGV[5])
local dropped = 0
if keep > 0 then
  local total = redis.call('ZCARD', KEYS[3])
  if total > keep then
    local victims = redis.call('ZRANGE', KEYS[3], 0, total - keep - 1)
    local kept = redis.call('ZRANGE', KEYS[3], total - keep, -1)
    dropped = drop_checkpoints(KEYS[1], KEYS[3], KEYS[4], ARGV[6], victims, kept, KEYS[7], KEYS[8])
  end
end
refresh(KEYS[1], KEYS[6], tonumber(ARGV[3]), tonumber(ARGV[4]),
        {KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[7], KEYS[8]})
return dropped
"""

PUT = Script(
    "put",
    _PRELUDE
    + r"""
-- KEYS: reg, namespaces, index, blobs, checkpoint, marker, elements, element counts
-- ARGV: ns, id, ttl, slack, keep_last, checkpoint prefix, cp, md, parent, refs, run, then k and k pairs of
-- (digest, chunk record) for the element hash, then n and n pairs of (blob field, reference record): the
-- channel values stored element by element. Each record is written if absent, and its references counted.
-- The other channel values, and the element records, are written by plain HSETs queued before this call in
-- the same MULTI/EXEC: a large string that passes through Lua costs the server ~1.3 us per KB (copy + GC), a
-- plain HSET ~0.04.
local refs_at = 12
"""
    + _PUT_BODY,
)

PUT_LEASED = Script(
    "put_leased",
    _PRELUDE
    + _LEASE_GUARD
    + r"""
-- PUT behind the writer lease. KEYS: as PUT, then lease.  ARGV: ns ... run as PUT, then owner, lease ttl (ms),
-- thread, then m and m (digest, element record) pairs, then the chunk and reference pairs as PUT.
-- A refused write stores nothing of the checkpoint and no element record (the plain channel values HSET before
-- it in the same MULTI/EXEC are then unreferenced: their versions are new, so no checkpoint ever reads them).
local leaves = tonumber(ARGV[15])
local refs_at = 16 + 2 * leaves
local refused = lease_guard(KEYS[9], ARGV[12], ARGV[13], ARGV[14], KEYS[3], ARGV[9])
if refused then return redis.error_reply(refused) end
for i = 16, 15 + 2 * leaves, 2 do redis.call('HSET', KEYS[7], ARGV[i], ARGV[i + 1]) end
"""
    + _PUT_BODY,
)

PUT_WRITES = Script(
    "put_writes",
    _PRELUDE
    + r"""
-- KEYS: reg, namespaces, checkpoint, marker, elements, element counts
-- ARGV: ns, ttl, slack, k and k pairs of (digest, chunk record), then n and n pairs of (field, reference
-- record): the regular writes stored element by element; each written if absent and counted when created.
-- The other writes are plain HSETNX (regular writes keep the first value stored for (task, idx)) and
-- HSET (special channels with a negative idx -- ERROR, INTERRUPT, ... -- are overwritten, as InMemorySaver
-- does), queued with this call in one MULTI/EXEC so that large values never pass through Lua.
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[1], KEYS[2], KEYS[3])
local nchunks = tonumber(ARGV[4])
set_counted(KEYS[5], KEYS[6], 5, nchunks)
local nrefs = tonumber(ARGV[5 + 2 * nchunks])
set_counted(KEYS[3], KEYS[6], 6 + 2 * nchunks, nrefs)
if nchunks + nrefs > 0 then redis.call('SADD', KEYS[1], KEYS[5], KEYS[6]) end
refresh(KEYS[1], KEYS[4], tonumber(ARGV[2]), tonumber(ARGV[3]), {KEYS[1], KEYS[2], KEYS[3], KEYS[5], KEYS[6]})
return 1
""",
)

PUT_WRITES_LEASED = Script(
    "put_writes_leased",
    _PRELUDE
    + _LEASE_GUARD
    + r"""
-- PUT_WRITES behind the writer lease, with the writes themselves: they must not land when the lease is
-- refused, and commands queued in a MULTI/EXEC run whatever an earlier one answers.
-- KEYS: reg, namespaces, checkpoint, marker, lease, elements, element counts
-- ARGV: ns, ttl, slack, owner, lease ttl (ms), thread, m and m (digest, element record) pairs, k and k
-- (digest, chunk record) pairs as PUT_WRITES, then n (pairs kept if present: HSETNX, their references counted
-- when created), then field, value pairs: the first n kept-first, the rest overwritten (HSET; never reference
-- records). A refused write stores nothing.
local refused = lease_guard(KEYS[5], ARGV[4], ARGV[5], ARGV[6], nil, nil)
if refused then return redis.error_reply(refused) end
local leaves = tonumber(ARGV[7])
for i = 8, 7 + 2 * leaves, 2 do redis.call('HSET', KEYS[6], ARGV[i], ARGV[i + 1]) end
local kat = 8 + 2 * leaves
local nchunks = tonumber(ARGV[kat])
set_counted(KEYS[6], KEYS[7], kat + 1, nchunks)
local at = kat + 1 + 2 * nchunks
local n = tonumber(ARGV[at])
set_counted(KEYS[3], KEYS[7], at + 1, n)
for i = at + 1 + 2 * n, #ARGV - 1, 2 do redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1]) end
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[1], KEYS[2], KEYS[3])
if redis.call('EXISTS', KEYS[7]) == 1 then redis.call('SADD', KEYS[1], KEYS[6], KEYS[7]) end
refresh(KEYS[1], KEYS[4], tonumber(ARGV[2]), tonumber(ARGV[3]), {KEYS[1], KEYS[2], KEYS[3], KEYS[6], KEYS[7]})
return 1
""",
)

LEASE_ACQUIRE = Script(
    "lease_acquire",
    r"""
-- KEYS: lease.  ARGV: owner, ttl (ms).  Takes or renews the lease: {0, ''}; held by another: {pttl, holder}.
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {0, ''}
end
return {redis.call('PTTL', KEYS[1]), holder}
""",
)

LEASE_RELEASE = Script(
    "lease_release",
    r"""
-- KEYS: lease, wake.  ARGV: owner, ttl (ms).  Releases the lease if this owner holds it (1, else 0) and wakes
-- one waiting writer (BLPOP on the wake list).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('RPUSH', KEYS[2], '1')
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
""",
)

LOAD = Script(
    "load",
    _PRELUDE
    + r"""
-- KEYS: index, blobs, reg, marker
-- ARGV: checkpoint prefix, ttl (0: no refresh on read), slack, id... (no id: the latest)
-- Returns {{id, flat checkpoint hash, blob values in the order of its refs}...} for ids that exist.
local ids = {}
if #ARGV < 4 then
  ids = redis.call('ZRANGE', KEYS[1], 0, 0, 'REV')
else
  for i = 4, #ARGV do ids[#ids + 1] = ARGV[i] end
end
local out = {}
for i = 1, #ids do
  local h = redis.call('HGETALL', ARGV[1] .. ids[i])
  local refs = nil
  for j = 1, #h, 2 do
    if h[j] == 'r' then refs = h[j + 1]; break end
  end
  if refs then
    local fields = cjson.decode(refs)
    local values = {}
    if #fields > 0 then values = hmget_all(KEYS[2], fields) end
    out[#out + 1] = {ids[i], h, values}
  end
end
if #out > 0 then refresh(KEYS[3], KEYS[4], tonumber(ARGV[2]), tonumber(ARGV[3]), {}) end
return out
""",
)

DELETE_THREAD = Script(
    "delete_thread",
    r"""
-- KEYS: reg, marker, namespaces.  ARGV: thread base ("P:{T}:")
-- Deletes every checkpoint key of the thread; returns the run ids its checkpoints belonged to.
local base = ARGV[1]
local members = redis.call('SMEMBERS', KEYS[1])
local runs, seen = {}, {}
for i = 1, #members do
  local m = members[i]
  if string.sub(m, #base + 1, #base + 2) == 'c:' then
    local run = redis.call('HGET', m, 'run')
    if run and run ~= '' and not seen[run] then seen[run] = true; runs[#runs + 1] = run end
  end
end
for i = 1, #members, 500 do
  redis.call('DEL', unpack(members, i, math.min(i + 499, #members)))
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
return runs
""",
)

DROP = Script(
    "drop",
    _PRELUDE
    + r"""
-- KEYS: reg, namespaces, marker.  ARGV: thread base, mode ('keep_latest' | 'runs'), run id...
-- Drops checkpoints per namespace (all but the newest, or those of the given runs) with their writes,
-- and every channel value no surviving checkpoint of that namespace references.
local base, mode = ARGV[1], ARGV[2]
local runs = {}
for i = 3, #ARGV do runs[ARGV[i]] = true end
local dropped = 0
for _, ns in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local idx, blobs, prefix = base .. 'i:' .. ns, base .. 'b:' .. ns, base .. 'c:' .. ns .. ':'
  local elements, counts = base .. 'm:' .. ns, base .. 'mc:' .. ns
  local ids = redis.call('ZRANGE', idx, 0, -1)
  local victims, kept = {}, {}
  if mode == 'keep_latest' then
    for i = 1, #ids - 1 do victims[#victims + 1] = ids[i] end
    if #ids > 0 then kept[1] = ids[#ids] end
  else
    for i = 1, #ids do
      local run = redis.call('HGET', prefix .. ids[i], 'run')
      if run and runs[run] then victims[#victims + 1] = ids[i] else kept[#kept + 1] = ids[i] end
    end
  end
  if #victims > 0 then
    dropped = dropped + drop_checkpoints(KEYS[1], idx, blobs, prefix, victims, kept, elements, counts)
  end
  if #kept == 0 then
    redis.call('DEL', blobs, elements, counts)
    redis.call('SREM', KEYS[1], blobs, elements, counts)
    redis.call('SREM', KEYS[2], ns)
  end
end
if redis.call('SCARD', KEYS[2]) == 0 then
  -- No checkpoint left: remove what remains of the thread (registry, marker, stray writes).
  local members = redis.call('SMEMBERS', KEYS[1])
  for i = 1, #members, 500 do
    redis.call('DEL', unpack(members, i, math.min(i + 499, #members)))
  end
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
end
return dropped
""",
)

EXPORT = Script(
    "export",
    r"""
-- KEYS: reg.  Returns {{key, type, flat contents}...} for every key of the thread's checkpoints.
local members = redis.call('SMEMBERS', KEYS[1])
table.sort(members)
local out = {}
for i = 1, #members do
  local m = members[i]
  local kind = redis.call('TYPE', m)['ok']
  if kind == 'hash' then
    out[#out + 1] = {m, kind, redis.call('HGETALL', m)}
  elseif kind == 'zset' then
    out[#out + 1] = {m, kind, redis.call('ZRANGE', m, 0, -1, 'WITHSCORES')}
  elseif kind == 'set' then
    out[#out + 1] = {m, kind, redis.call('SMEMBERS', m)}
  end
end
return out
""",
)

IMPORT = Script(
    "import",
    _PRELUDE
    + r"""
-- KEYS: reg, marker.  ARGV: ttl, slack, then groups of key, type, n, n items (as EXPORT returns them; the
-- element counts of a namespace come as type 'counts').
-- Merges into whatever the target thread holds (HSET, ZADD, SADD), so it is safe to retry.
local i, touched = 3, {KEYS[1]}
while i <= #ARGV do
  local key, kind, n = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  i = i + 3
  if kind == 'hash' then
    for j = i, i + n - 1, 2 do redis.call('HSET', key, ARGV[j], ARGV[j + 1]) end
  elseif kind == 'counts' then
    -- reference counts add up: the target's own records keep theirs (merging can only over-count, which
    -- keeps an element record longer, never drops one still referenced)
    for j = i, i + n - 1, 2 do redis.call('HINCRBY', key, ARGV[j], tonumber(ARGV[j + 1])) end
  elseif kind == 'zset' then
    for j = i, i + n - 1, 2 do redis.call('ZADD', key, ARGV[j + 1], ARGV[j]) end
  else
    for j = i, i + n - 1 do redis.call('SADD', key, ARGV[j]) end
  end
  i = i + n
  redis.call('SADD', KEYS[1], key)
  touched[#touched + 1] = key
end
refresh(KEYS[1], KEYS[2], tonumber(ARGV[1]), tonumber(ARGV[2]), touched)
return #touched - 1
""",
)

REFRESH = Script(
    "refresh",
    _PRELUDE
    + r"""
-- KEYS: reg, marker.  ARGV: ttl, slack.  Re-arms the thread's TTL (an explicit touch).
refresh(KEYS[1], KEYS[2], tonumber(ARGV[1]), tonumber(ARGV[2]), {KEYS[1]})
return redis.call('EXISTS', KEYS[1])
""",
)

ARCHIVE_RECORD = Script(
    "archive_record",
    _with_index_constants(r"""
-- KEYS: events-by-time, events, summaries, restore marks, then the search index: postings, docs, events
--       indexed, stats, passage lengths, and the keys of the index format before 0.x (postings zset, passages),
--       wiped.
-- ARGV: id, score, event, summary, ttl (ms, 0: none), the digest of the event's index now held (as the
--       caller read it; '' when none), the new digest, passages, their total length in terms, their lengths
--       ('>I2' each), how many of the old index's terms follow (-1: unknown, every term is looked at), those
--       terms, then (term, postings) pairs: 4 bytes a passage holding the term (its number in the event, '>I3',
--       then tf 'B'; see freemem.redis.archive).
-- Returns 1, or 0 when the event's index is not the one the caller read (it reads the old event and retries).
local post, docs, evx, stats, lens = KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local id = ARGV[1]
local nold = tonumber(ARGV[11])
local index = true
local cur = nil
if redis.call('HGET', stats, 'v') ~= '@INDEX_VERSION@' then
  -- No index of this format: a new thread gets one; a thread archived without one is indexed on its first
  -- search (every event at once), so this event is not indexed alone.
  index = redis.call('ZCARD', KEYS[1]) == 0
  redis.call('DEL', post, docs, evx, stats, lens, KEYS[10], KEYS[11])
  if index then redis.call('HSET', stats, 'v', '@INDEX_VERSION@', 'docs', 0, 'len', 0, 'next', 0) end
else
  cur = redis.call('HGET', evx, id)
  local next = tonumber(redis.call('HGET', stats, 'next') or '0')
  if next + tonumber(ARGV[8]) > @MAX_PASSAGES@ then
    return redis.error_reply('ERR the search index of this thread has numbered its @MAX_PASSAGES_TEXT@ passages; ' ..
                             'delete its a:x:* keys to have it renumbered on the next search')
  end
end
if cur then
  local digest, first, count, len = string.match(cur, '^(%S+) (%d+) (%d+) (%d+)$')
  if digest == ARGV[7] then
    index = false
  elseif digest ~= ARGV[6] then
    return 0
  else
    -- Re-recorded with other text: its old postings leave the index first.
    first, count = tonumber(first), tonumber(count)
    local stop = first + count
    local terms = {}
    if nold < 0 then
      -- The caller could not tell the old event's terms (it was indexed by another version): look in every term.
      terms = redis.call('HKEYS', post)
    else
      for i = 12, 11 + nold do terms[#terms + 1] = ARGV[i] end
    end
    for _, term in ipairs(terms) do
      local old = redis.call('HGET', post, term)
      if old then
        local keep = {}
        for j = 1, #old, 4 do
          local doc = struct.unpack('>I3', old, j)
          if doc < first or doc >= stop then keep[#keep + 1] = string.sub(old, j, j + 3) end
        end
        if #keep == 0 then redis.call('HDEL', post, term) else redis.call('HSET', post, term, table.concat(keep)) end
      end
    end
    redis.call('ZREM', docs, id)
    redis.call('HINCRBY', stats, 'docs', -count)
    redis.call('HINCRBY', stats, 'len', -tonumber(len))
    redis.call('HDEL', evx, id)
  end
end
redis.call('ZADD', KEYS[1], ARGV[2], id)
redis.call('HSET', KEYS[2], id, ARGV[3])
redis.call('HSET', KEYS[3], id, ARGV[4])
if index then
  local count = tonumber(ARGV[8])
  local first = redis.call('HINCRBY', stats, 'next', count) - count
  for i = 12 + math.max(0, nold), #ARGV, 2 do
    local term, rel = ARGV[i], ARGV[i + 1]
    local parts = {redis.call('HGET', post, term) or ''}
    for j = 1, #rel, 4 do
      parts[#parts + 1] = struct.pack('>I3', first + struct.unpack('>I3', rel, j)) .. string.sub(rel, j + 3, j + 3)
    end
    redis.call('HSET', post, term, table.concat(parts))
  end
  if count > 0 then
    redis.call('SETRANGE', lens, 2 * first, ARGV[10])
    redis.call('ZADD', docs, first, id)
  end
  redis.call('HINCRBY', stats, 'docs', count)
  redis.call('HINCRBY', stats, 'len', ARGV[9])
  redis.call('HSET', evx, id, ARGV[7] .. ' ' .. first .. ' ' .. count .. ' ' .. ARGV[9])
end
local ttl = tonumber(ARGV[5])
if ttl > 0 then for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], ttl) end end
return 1
"""),
)

ARCHIVE_SEARCH = Script(
    "archive_search",
    _with_index_constants(r"""
-- BM25 over the thread's search index, on the server: only the best passages' events travel.
-- KEYS: postings, docs, stats, events-by-time, events, passage lengths.
-- ARGV: how many, then (term, times in the query) pairs.
-- Returns {-1, events} when the thread has events but no index of this format yet; else {n, m, (event id,
-- passage number in the event, score) * m best first, then (event id, stored event) for each event named}
-- (n: passages indexed). Same formula as freemem.core.bm25 (k1 1.2, b 0.75).
if redis.call('HGET', KEYS[3], 'v') ~= '@INDEX_VERSION@' then return {-1, redis.call('ZCARD', KEYS[4])} end
local n = tonumber(redis.call('HGET', KEYS[3], 'docs') or '0')
if n <= 0 then return {0, 0} end
local avg = tonumber(redis.call('HGET', KEYS[3], 'len') or '0') / n
if avg <= 0 then avg = 1 end
local k1, b, want = 1.2, 0.75, tonumber(ARGV[1])
local scores, seen = {}, {}
local lens = nil
for i = 2, #ARGV, 2 do
  local postings = redis.call('HGET', KEYS[1], ARGV[i])
  if postings then
    lens = lens or redis.call('GET', KEYS[6]) or ''
    local df = #postings / 4
    local w = math.log(1 + (n - df + 0.5) / (df + 0.5)) * tonumber(ARGV[i + 1]) * (k1 + 1)
    for j = 1, #postings, 4 do
      local doc, tf = struct.unpack('>I3B', postings, j)
      local len = avg
      if 2 * doc + 2 <= #lens then len = struct.unpack('>I2', lens, 2 * doc + 1) end
      local s = w * tf / (tf + k1 * (1 - b + b * len / avg))
      local old = scores[doc]
      if old then scores[doc] = old + s else scores[doc] = s; seen[#seen + 1] = doc end
    end
  end
end
-- The best `want`, kept sorted in a small list (ties: the passage indexed first).
local best = {}
for _, doc in ipairs(seen) do
  local s = scores[doc]
  local last = best[#best]
  if #best < want or s > scores[last] or (s == scores[last] and doc < last) then
    local at = #best + 1
    while at > 1 and (scores[best[at - 1]] < s or (scores[best[at - 1]] == s and best[at - 1] > doc)) do
      at = at - 1
    end
    table.insert(best, at, doc)
    if #best > want then best[#best] = nil end
  end
end
local out = {n, #best}
local ids, named = {}, {}
for _, doc in ipairs(best) do
  local found = redis.call('ZRANGE', KEYS[2], doc, '-inf', 'BYSCORE', 'REV', 'LIMIT', 0, 1, 'WITHSCORES')
  local id = found[1] or ''
  out[#out + 1] = id
  out[#out + 1] = doc - tonumber(found[2] or doc)
  out[#out + 1] = string.format('%.17g', scores[doc])
  if id ~= '' and not named[id] then named[id] = true; ids[#ids + 1] = id end
end
if #ids > 0 then
  local events = redis.call('HMGET', KEYS[5], unpack(ids))
  for i, id in ipairs(ids) do out[#out + 1] = id; out[#out + 1] = events[i] end
end
return out
"""),
)

ARCHIVE_MARK = Script(
    "archive_mark",
    r"""
-- KEYS: events-by-time, events, summaries, restore marks (and the search index's keys, for the TTL).
-- ARGV: id, mark, ttl (ms, 0: none)
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[4], ARGV[1], ARGV[2])
local ttl = tonumber(ARGV[3])
if ttl > 0 then for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], ttl) end end
return 1
""",
)
