"""Serialization between LangGraph objects and the bytes freemem stores in Redis.

Values go through the saver's ``serde`` (``JsonPlusSerializer`` by default, or an ``EncryptedSerializer``):
``serde.dumps_typed`` gives ``(type, bytes)``, and freemem stores the pair length-prefixed (:func:`pack`), so
nothing about a value's bytes is assumed; bytes of :data:`COMPRESS_MIN_BYTES` or more are stored
zlib-compressed when that saves a tenth (the type then says so: ``freemem.zlib:<type>``; an encrypted value
does not compress and stays as it is). Storage never interprets a value; only Lua reads the ``r`` field
(a JSON list of blob field names) to fetch a checkpoint's channel values in the same round trip.

**Lists are stored element by element** (:func:`encode_value`): a channel value or a pending write that is a
``list`` whose elements encode to :data:`SPLIT_MIN_BYTES` or more is stored as a *reference record* (type
:data:`REFS_TYPE`, data: the 16-byte BLAKE2b digests of its elements' records, in order), and each element's
record once in the namespace's element hash under its digest. A list of more than :data:`CHUNK_OVER` elements
references *chunks* instead -- reference records of ~16 digests, cut where the content says
(:func:`chunk_bounds`), stored as elements too -- so a new checkpoint of a long list stores its last chunk and a
digest per chunk, not a digest per message. A thread's messages list changes at every step
but its messages mostly do not, so a checkpoint costs 16 bytes per message plus the messages that are new;
the element records are content-addressed, so the same message in a later checkpoint, in a pending write and
in a copy of the list is one record. Lua reads the digests of a reference record (to count references, see
:mod:`~freemem.redis.scripts`), never the element bytes. Records written before this format (whole lists)
still decode: a record is a reference record only when its type says so.
"""

from __future__ import annotations

import hashlib
import json
import struct
import threading
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from langgraph.checkpoint.base import ChannelVersions, PendingWrite
from langgraph.checkpoint.serde.base import SerializerProtocol

from freemem.core.errors import StoreError

__all__ = [
    "DIGEST_SIZE",
    "CHUNK_MAX",
    "CHUNK_OVER",
    "COMPRESS_MIN_BYTES",
    "EMPTY_BLOB",
    "REFS_TYPE",
    "SPLIT_MIN_BYTES",
    "ZLIB_PREFIX",
    "WRITE_FIELD_PREFIX",
    "blob_field",
    "Encoded",
    "Expanded",
    "Expansions",
    "blob_refs",
    "chunk_bounds",
    "chunk_data",
    "decode_typed",
    "decode_value",
    "decode_write",
    "encode_typed",
    "encode_value",
    "encode_write",
    "pack",
    "record_refs",
    "refs_record",
    "unpack",
    "write_field",
    "write_refs",
]

_COUNT = struct.Struct(">B")
WRITE_FIELD_PREFIX = b"w:"
EMPTY_TYPE = "empty"


def pack(*parts: bytes) -> bytes:
    """Concatenate byte strings with a length header, so any bytes survive the round trip."""
    n = len(parts)
    return _COUNT.pack(n) + struct.pack(f">{n}I", *(len(p) for p in parts)) + b"".join(parts)


def unpack(data: bytes) -> list[bytes]:
    """Invert :func:`pack`; a record that does not parse is a :class:`~freemem.core.errors.StoreError`."""
    try:
        (n,) = _COUNT.unpack_from(data, 0)
        lengths = struct.unpack_from(f">{n}I", data, 1)
    except struct.error as exc:
        raise StoreError(f"corrupt record in Redis ({len(data)} bytes): {exc}") from exc
    at = 1 + 4 * n
    out: list[bytes] = []
    for length in lengths:
        out.append(data[at : at + length])
        at += length
    if at != len(data):
        raise StoreError(f"corrupt record in Redis: expected {at} bytes, found {len(data)}")
    return out


ZLIB_PREFIX = "freemem.zlib:"
"""Type prefix of a record whose serialized bytes are zlib-compressed (the serde's own type follows it)."""
COMPRESS_MIN_BYTES = 512
"""Serialized values of at least this many bytes are stored compressed when that saves a tenth or more."""


def _compress(type_: str, data: bytes) -> tuple[bytes, bytes]:
    if len(data) >= COMPRESS_MIN_BYTES:
        packed = zlib.compress(data, 6)
        if len(packed) * 10 <= len(data) * 9:
            return (ZLIB_PREFIX + type_).encode(), packed
    return type_.encode(), data


def _loads(serde: SerializerProtocol, type_: bytes, data: bytes) -> Any:
    name = type_.decode()
    if name.startswith(ZLIB_PREFIX):
        name, data = name[len(ZLIB_PREFIX) :], zlib.decompress(data)
    return serde.loads_typed((name, data))


def encode_typed(serde: SerializerProtocol, value: Any) -> bytes:
    """Serialize one value with ``serde`` into a self-describing record (compressed when that pays)."""
    type_, data = serde.dumps_typed(value)
    return pack(*_compress(type_, data))


EMPTY_BLOB = pack(EMPTY_TYPE.encode(), b"")
"""The record of a channel that has a new version but no value (an emptied channel); never loaded."""


def decode_typed(serde: SerializerProtocol, raw: bytes) -> Any:
    """Invert :func:`encode_typed`."""
    type_, data = unpack(raw)
    return _loads(serde, type_, data)


REFS_TYPE = "freemem.refs"
"""Type of a reference record: its data is the concatenated digests of the records it stands for, in order."""
_REFS = REFS_TYPE.encode()
DIGEST_SIZE = 16
"""Bytes of an element digest (BLAKE2b-128 of the element's record)."""
SPLIT_MIN_BYTES = 1024
"""A list is stored element by element when its elements' records add up to at least this many bytes."""
CHUNK_OVER = 32
"""A list of more elements references them through chunks (see :func:`chunk_bounds`)."""
CHUNK_MAX = 64
"""The most digests one chunk holds."""

Elements = dict[bytes, bytes]
"""Element records by digest: what a reference record needs to be decoded."""


class Expanded(NamedTuple):
    """What an element record stands for, ready for the serde: ``runs`` of ``(type, bytes, items)`` in list
    order -- a ``msgpack`` run holds ``items`` serialized items back to back (a msgpack array's body), any other
    type one item. Derived from content-addressed records, so it never goes stale; ``size`` is its bytes."""

    runs: tuple[tuple[bytes, bytes, int], ...]
    size: int


Expansions = dict[bytes, Expanded]
"""Expanded elements by digest (see :class:`Expanded`)."""


class Encoded(NamedTuple):
    """A value as stored: its ``record``, the ``leaves`` it references (element records, written as they are),
    the ``chunks`` (element records that are reference records themselves, counted when created) and the
    ``expanded`` form of the digests the record names directly (so reading back what was written decodes no
    element record)."""

    record: bytes
    leaves: Elements
    chunks: Elements
    expanded: Expansions


def digest(record: bytes) -> bytes:
    """The content address of an element record."""
    return hashlib.blake2b(record, digest_size=DIGEST_SIZE).digest()


def refs_record(digests: Sequence[bytes]) -> bytes:
    """A reference record standing for the records named by ``digests``, in order."""
    return pack(_REFS, b"".join(digests))


def chunk_bounds(digests: Sequence[bytes]) -> list[int]:
    """Where a long list's digests are cut into chunks: after each digest whose first byte is below 16 (1 in
    16, so ~16 a chunk), and every :data:`CHUNK_MAX` digests at the latest. The cuts depend on the elements,
    not on positions, so a list that grows, loses its head (a fold) or has one element replaced keeps every
    other chunk -- and a chunk, like an element, is stored once."""
    cuts: list[int] = []
    start = 0
    for i, d in enumerate(digests):
        if d[0] < 16 or i + 1 - start >= CHUNK_MAX:
            cuts.append(i + 1)
            start = i + 1
    if start < len(digests):
        cuts.append(len(digests))
    return cuts


class _Memo:
    """``(record, digest)`` of serialized elements by the digest of their serialized bytes, bounded by the bytes
    of the records it holds: a thread's messages are serialized again at every step, but compressed and hashed
    once. A pure function of the bytes, so it is shared by every saver of the process."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self.entries: OrderedDict[bytes, tuple[bytes, bytes]] = OrderedDict()
        self.lock = threading.Lock()

    def element(self, type_: str, data: bytes) -> tuple[bytes, bytes]:
        key = hashlib.blake2b(data, digest_size=DIGEST_SIZE, person=type_.encode()[:16]).digest()
        with self.lock:
            hit = self.entries.get(key)
            if hit is not None:
                self.entries.move_to_end(key)
                return hit
        record = pack(*_compress(type_, data))
        value = (record, digest(record))
        with self.lock:
            if key not in self.entries:
                self.entries[key] = value
                self.size += len(record)
                while self.size > self.max_bytes and self.entries:
                    _, (dropped, _) = self.entries.popitem(last=False)
                    self.size -= len(dropped)
        return value


_MEMO = _Memo(32 << 20)


def _element(type_: str, data: bytes) -> tuple[bytes, bytes]:
    """``(record, digest)`` of one serialized element (memoized, see :class:`_Memo`)."""
    return _MEMO.element(type_, data)


_MSGPACK = b"msgpack"
_RUN_OVERHEAD = 64  # bytes counted per run besides its data, for the caches' bounds


def _merged(runs: Iterable[tuple[bytes, bytes, int]]) -> Expanded:
    """``runs`` in order as one :class:`Expanded`, adjacent ``msgpack`` runs joined into one."""
    out: list[tuple[bytes, bytes, int]] = []
    bodies: list[bytes] = []
    items = 0
    for name, body, n in runs:
        if name == _MSGPACK:
            bodies.append(body)
            items += n
            continue
        if bodies:
            out.append((_MSGPACK, b"".join(bodies), items))
            bodies, items = [], 0
        out.append((name, body, n))
    if bodies:
        out.append((_MSGPACK, b"".join(bodies), items))
    return Expanded(tuple(out), sum(len(body) + _RUN_OVERHEAD for _, body, _ in out))


def _expanded(typed: Sequence[tuple[bytes, bytes]]) -> Expanded:
    """The :class:`Expanded` form of serialized items ``(type, bytes)``."""
    return _merged((name, body, 1) for name, body in typed)


def _joined(parts: Sequence[Expanded]) -> Expanded:
    """``parts`` one after another, as one :class:`Expanded`."""
    if len(parts) == 1:
        return parts[0]
    return _merged(run for part in parts for run in part.runs)


def _split(serde: SerializerProtocol, value: Any) -> tuple[bytes, Elements, Elements, Expansions] | None:
    """``(data of the reference record, leaves, chunks, expanded)`` of a list worth storing element by element."""
    if type(value) is not list or not value:
        return None
    typed = [serde.dumps_typed(item) for item in value]
    if sum(len(data) for _, data in typed) < SPLIT_MIN_BYTES:
        return None
    leaves: Elements = {}
    digests: list[bytes] = []
    for type_, data in typed:
        record, d = _element(type_, data)
        leaves[d] = record
        digests.append(d)
    names = [(type_.encode(), data) for type_, data in typed]
    chunks: Elements = {}
    expanded: Expansions = {}
    if len(digests) > CHUNK_OVER:
        top: list[bytes] = []
        start = 0
        for cut in chunk_bounds(digests):
            chunk = refs_record(digests[start:cut])
            d = digest(chunk)
            chunks[d] = chunk
            expanded[d] = _expanded(names[start:cut])
            top.append(d)
            start = cut
        digests = top
    else:
        for d, pair in zip(digests, names, strict=True):
            expanded[d] = _expanded((pair,))
    return b"".join(digests), leaves, chunks, expanded


def encode_value(serde: SerializerProtocol, value: Any) -> Encoded:
    """A channel value as stored: a plain record, or for a large list a reference record and its elements."""
    split = _split(serde, value)
    if split is None:
        return Encoded(encode_typed(serde, value), {}, {}, {})
    data, leaves, chunks, expanded = split
    return Encoded(pack(_REFS, data), leaves, chunks, expanded)


def _digests(data: bytes) -> list[bytes]:
    if len(data) % DIGEST_SIZE:
        raise StoreError(f"corrupt reference record in Redis: {len(data)} bytes of digests")
    return [data[i : i + DIGEST_SIZE] for i in range(0, len(data), DIGEST_SIZE)]


def record_refs(raw: bytes | None) -> list[bytes]:
    """The digests a record references directly (none for a plain record)."""
    if raw is None or len(raw) < 1:
        return []
    parts = unpack(raw)
    if len(parts) >= 2 and parts[-2] == _REFS:
        return _digests(parts[-1])
    return []


_CHUNK_HEAD = pack(_REFS, b"")[:5]  # count 2, then the type's length


def chunk_data(record: bytes) -> bytes | None:
    """The digests of an element record that is a chunk (a reference record), else ``None``."""
    if record[:5] != _CHUNK_HEAD or record[9 : 9 + len(_REFS)] != _REFS:
        return None
    return unpack(record)[1]


def _expand(d: bytes, elements: Mapping[bytes, bytes], depth: int = 0) -> Expanded:
    """What the element record named ``d`` stands for, chunks expanded."""
    record = elements.get(d)
    if record is None:
        raise StoreError(f"an element record ({d.hex()}) referenced by a checkpoint is missing from Redis")
    inner = chunk_data(record)
    if inner is None:
        name, body = unpack(record)
        if name.startswith(_ZLIB):
            name, body = name[len(_ZLIB) :], zlib.decompress(body)
        return _expanded(((name, body),))
    if depth >= 4:
        raise StoreError("corrupt reference record in Redis: chunks nested too deep")
    return _joined([_expand(x, elements, depth + 1) for x in _digests(inner)])


_ZLIB = ZLIB_PREFIX.encode()


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes((0x90 | n,))
    if n < 1 << 16:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def _decode_parts(serde: SerializerProtocol, type_: bytes, data: bytes, elements: Mapping[bytes, bytes],
                  expanded: Expansions | None) -> Any:
    if type_ != _REFS:
        return _loads(serde, type_, data)
    parts: list[Expanded] = []
    for d in _digests(data):
        part = expanded.get(d) if expanded is not None else None
        if part is None:
            part = _expand(d, elements)
            if expanded is not None:
                expanded[d] = part
        parts.append(part)
    out: list[Any] = []
    for name, body, items in _joined(parts).runs:
        if name == _MSGPACK:
            # A msgpack array is its header followed by its items, each encoded as it is alone: one call decodes
            # the run as fast as a list stored whole (the serde's ext hooks see the same bytes).
            out.extend(serde.loads_typed(("msgpack", _array_header(items) + body)))
        else:
            out.append(serde.loads_typed((name.decode(), body)))
    return out


def decode_value(serde: SerializerProtocol, raw: bytes, elements: Mapping[bytes, bytes],
                 expanded: Expansions | None = None) -> Any:
    """Invert :func:`encode_value`. ``elements``: at least the records ``raw`` references, chunks expanded, but
    for the digests ``expanded`` holds; what it expands from ``elements`` is added to ``expanded``."""
    type_, data = unpack(raw)
    return _decode_parts(serde, type_, data, elements, expanded)


def is_empty_blob(raw: bytes | None) -> bool:
    """Whether a stored channel value is absent or the empty marker."""
    return raw is None or raw == EMPTY_BLOB


def blob_field(channel: str, version: str | int | float) -> str:
    """The field of one channel version in a namespace's blob hash."""
    return f"{channel}\x1f{version}"


def blob_refs(channel_versions: ChannelVersions) -> tuple[list[str], list[str]]:
    """``(channels, fields)`` a checkpoint needs to rebuild its channel values, in the same order."""
    channels = list(channel_versions)
    return channels, [blob_field(ch, channel_versions[ch]) for ch in channels]


def refs_json(fields: Sequence[str]) -> bytes:
    """The ``r`` field: blob fields as JSON, the one value Lua decodes (with ``cjson``)."""
    return json.dumps(list(fields), ensure_ascii=False, separators=(",", ":")).encode()


def refs_from_json(raw: bytes) -> list[str]:
    return list(json.loads(raw))


def write_field(task_id: str, idx: int) -> bytes:
    """The hash field of one pending write; ``(task_id, idx)`` identifies it, as in ``InMemorySaver``."""
    return WRITE_FIELD_PREFIX + f"{task_id}\x1f{idx}".encode()


def encode_write(serde: SerializerProtocol, task_id: str, idx: int, channel: str, value: Any, task_path: str,
                 *, split: bool = False) -> Encoded:
    """A pending write as stored; with ``split``, a large list value is stored as in :func:`encode_value`."""
    parts = _split(serde, value) if split else None
    if parts is None:
        type_, data = _compress(*serde.dumps_typed(value))
        leaves: Elements = {}
        chunks: Elements = {}
        expanded: Expansions = {}
    else:
        type_, (data, leaves, chunks, expanded) = _REFS, parts
    head = (task_id.encode(), str(idx).encode(), channel.encode(), task_path.encode(), type_)
    return Encoded(pack(*head, data), leaves, chunks, expanded)


def decode_write(serde: SerializerProtocol, raw: bytes, elements: Mapping[bytes, bytes] | None = None,
                 expanded: Expansions | None = None) -> tuple[tuple[str, str, int], PendingWrite]:
    """``(sort key, (task_id, channel, value))`` of one stored write; see ``writes_sort_key`` (``elements`` and
    ``expanded`` as in :func:`decode_value`)."""
    task_id, idx, channel, task_path, type_, data = unpack(raw)
    tid = task_id.decode()
    value = _decode_parts(serde, type_, data, elements or {}, expanded)
    return (task_path.decode(), tid, int(idx)), (tid, channel.decode(), value)


def write_refs(fields: Mapping[bytes, bytes]) -> list[bytes]:
    """The element digests the pending writes among a checkpoint hash's fields reference."""
    return [d for k, v in fields.items() if k.startswith(WRITE_FIELD_PREFIX) for d in record_refs(v)]


def decode_writes(serde: SerializerProtocol, fields: Mapping[bytes, bytes],
                  elements: Mapping[bytes, bytes] | None = None,
                  expanded: Expansions | None = None) -> list[PendingWrite]:
    """The pending writes among a checkpoint hash's fields, in ``writes_sort_key`` order."""
    decoded = [decode_write(serde, v, elements, expanded)
               for k, v in fields.items() if k.startswith(WRITE_FIELD_PREFIX)]
    decoded.sort(key=lambda item: item[0])
    return [w for _, w in decoded]
