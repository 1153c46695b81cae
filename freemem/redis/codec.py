"""Serialization between LangGraph objects and the bytes freemem stores in Redis.

Values go through the saver's ``serde`` (``JsonPlusSerializer`` by default, or an ``EncryptedSerializer``):
``serde.dumps_typed`` gives ``(type, bytes)``, and freemem stores the pair length-prefixed (:func:`pack`), so
nothing about a value's bytes is assumed. Storage never interprets a value; only Lua reads the ``r`` field
(a JSON list of blob field names) to fetch a checkpoint's channel values in the same round trip.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, Sequence
from typing import Any

from langgraph.checkpoint.base import ChannelVersions, PendingWrite
from langgraph.checkpoint.serde.base import SerializerProtocol

from freemem.core.errors import StoreError

__all__ = [
    "EMPTY_BLOB",
    "WRITE_FIELD_PREFIX",
    "blob_field",
    "blob_refs",
    "decode_typed",
    "decode_write",
    "encode_typed",
    "encode_write",
    "pack",
    "unpack",
    "write_field",
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


def encode_typed(serde: SerializerProtocol, value: Any) -> bytes:
    """Serialize one value with ``serde`` into a self-describing record."""
    type_, data = serde.dumps_typed(value)
    return pack(type_.encode(), data)


EMPTY_BLOB = pack(EMPTY_TYPE.encode(), b"")
"""The record of a channel that has a new version but no value (an emptied channel); never loaded."""


def decode_typed(serde: SerializerProtocol, raw: bytes) -> Any:
    """Invert :func:`encode_typed`."""
    type_, data = unpack(raw)
    return serde.loads_typed((type_.decode(), data))


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


def encode_write(serde: SerializerProtocol, task_id: str, idx: int, channel: str, value: Any, task_path: str) -> bytes:
    type_, data = serde.dumps_typed(value)
    return pack(task_id.encode(), str(idx).encode(), channel.encode(), task_path.encode(), type_.encode(), data)


def decode_write(serde: SerializerProtocol, raw: bytes) -> tuple[tuple[str, str, int], PendingWrite]:
    """``(sort key, (task_id, channel, value))`` of one stored write; see ``writes_sort_key``."""
    task_id, idx, channel, task_path, type_, data = unpack(raw)
    tid = task_id.decode()
    value = serde.loads_typed((type_.decode(), data))
    return (task_path.decode(), tid, int(idx)), (tid, channel.decode(), value)


def decode_writes(serde: SerializerProtocol, fields: Mapping[bytes, bytes]) -> list[PendingWrite]:
    """The pending writes among a checkpoint hash's fields, in ``writes_sort_key`` order."""
    decoded = [decode_write(serde, v) for k, v in fields.items() if k.startswith(WRITE_FIELD_PREFIX)]
    decoded.sort(key=lambda item: item[0])
    return [w for _, w in decoded]
