"""Read and write the file formats ``freemem clean`` and the benchmarks take, keeping records and fields.

Formats (auto-detected; force one with ``format=``):

* ``messages-json`` — a JSON file holding one conversation (a list of chat messages, or an object with a
  ``messages`` list) or a list of records that each hold a message list under some key (tau-bench's
  ``traj``, OpenHands' ``messages``);
* ``messages-jsonl`` — one record per line, each a message list or an object holding one; or one chat
  message per line (a single conversation);
* ``traces-jsonl`` — one record per line with a reasoning trace in a text field (``text``, ``trace``,
  ``output``, ``response``, ``completion``, ``code``…; a list of strings is a list of traces);
* ``text`` — plain text.

A :class:`Document` is a list of :class:`Item` objects — one conversation or one trace each — that point
back into the parsed records, so writing it back changes only the pruned messages or text.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from freemem.errors import FormatError

__all__ = ["FORMATS", "Document", "Item", "read_document", "write_document"]

Format = Literal["messages-json", "messages-jsonl", "traces-jsonl", "text"]
FORMATS: tuple[str, ...] = ("auto", "messages-json", "messages-jsonl", "traces-jsonl", "text")

TEXT_FIELDS = ("text", "trace", "output", "response", "completion", "reasoning", "content", "code", "generation")
QUESTION_FIELDS = ("question", "problem", "prompt", "query", "input")
MESSAGE_KEYS = ("messages", "traj", "trajectory", "conversation", "conversations", "history", "chat")


@dataclass
class Item:
    """One conversation or one trace inside a document."""

    label: str
    kind: Literal["messages", "text"]
    value: Any  # list of messages, or the trace text
    question: str | None = None
    #: Writes a new value back into the parsed document.
    put: Callable[[Any], None] = field(repr=False, default=lambda _v: None)


@dataclass
class Document:
    format: Format
    items: list[Item]
    root: Any  # the parsed records (JSON value, list of line values, or the text)


def _is_message(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("role"), str)


def _is_message_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(_is_message(m) for m in value)


def _message_key(record: dict[str, Any]) -> str | None:
    for key in MESSAGE_KEYS:
        if _is_message_list(record.get(key)):
            return key
    for key, value in record.items():
        if _is_message_list(value):
            return key
    return None


def _text_key(record: dict[str, Any], forced: str | None) -> str | None:
    if forced:
        return forced if forced in record else None
    for key in TEXT_FIELDS:
        value = record.get(key)
        if isinstance(value, str) and value.strip():
            return key
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return key
    return None


def _question(record: dict[str, Any]) -> str | None:
    for key in QUESTION_FIELDS:
        if isinstance(record.get(key), str):
            return record[key]
    return None


def _setter(container: Any, key: Any) -> Callable[[Any], None]:
    def put(value: Any) -> None:
        container[key] = value

    return put


def _label(record: Any, index: int) -> str:
    if isinstance(record, dict):
        for key in ("instance_id", "task_id", "id", "idx", "name"):
            if key in record and isinstance(record[key], (str, int)):
                return f"{key}={record[key]}"
    return f"#{index}"


def _record_items(record: Any, index: int, container: Any, key: Any, text_field: str | None,
                  want: str | None) -> list[Item]:
    label = _label(record, index)
    if want != "traces" and _is_message_list(record):
        return [Item(label, "messages", record, put=_setter(container, key))]
    if not isinstance(record, dict):
        raise FormatError(f"record {index} is a {type(record).__name__}, not an object or a message list")
    if want != "traces":
        mkey = _message_key(record)
        if mkey is not None:
            return [Item(label, "messages", record[mkey], put=_setter(record, mkey))]
    tkey = _text_key(record, text_field)
    if tkey is None:
        raise FormatError(f"record {index} ({label}) holds no message list and no text field "
                          f"(looked for {', '.join(TEXT_FIELDS)}; name one with --field)")
    value = record[tkey]
    question = _question(record)
    if isinstance(value, list):
        return [Item(f"{label}[{j}]", "text", v, question, _setter(value, j)) for j, v in enumerate(value)]
    return [Item(label, "text", value, question, _setter(record, tkey))]


def read_document(path: str | Path, *, format: str = "auto", text_field: str | None = None) -> Document:
    """Parse ``path`` into a :class:`Document`. Raises :class:`FormatError` with one clear line."""
    path = Path(path)
    if format not in FORMATS:
        raise FormatError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FormatError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise FormatError(f"{path}: is a directory") from None
    except UnicodeDecodeError:
        raise FormatError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise FormatError(f"{path}: {exc.strerror or exc}") from None
    if not raw.strip():
        raise FormatError(f"{path}: file is empty")
    fmt = format if format != "auto" else _detect(path, raw)
    if fmt == "text":
        doc = Document("text", [], raw)
        doc.items.append(Item(path.name, "text", raw, put=lambda v: setattr(doc, "root", v)))
        return doc
    if fmt == "messages-json":
        try:
            root = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise FormatError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
        holder = [root]
        if _is_message_list(root):
            items = [Item(path.name, "messages", root, put=_setter(holder, 0))]
        elif isinstance(root, dict) and _message_key(root):
            items = _record_items(root, 0, holder, 0, text_field, "messages")
        elif isinstance(root, list):
            items = [it for i, rec in enumerate(root) for it in _record_items(rec, i, root, i, text_field, None)]
        else:
            raise FormatError(f"{path}: JSON holds no chat messages (expected a message list or records)")
        doc = Document("messages-json", items, holder)
        return doc
    # JSON lines
    lines: list[Any] = []
    for n, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            lines.append(None)
            continue
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise FormatError(f"{path}: line {n} is not valid JSON ({exc.msg})") from None
    values = [(i, v) for i, v in enumerate(lines) if v is not None]
    if fmt == "messages-jsonl" and values and all(_is_message(v) for _, v in values):
        # One conversation, one message per line.
        msgs = [v for _, v in values]

        def put_all(new: list[Any]) -> None:
            for (i, _), m in zip(values, new):
                lines[i] = m

        return Document("messages-jsonl", [Item(path.name, "messages", msgs, put=put_all)], lines)
    want = "traces" if fmt == "traces-jsonl" else "messages"
    items = [it for i, v in values for it in _record_items(v, i, lines, i, text_field, want)]
    return Document(fmt, items, lines)  # type: ignore[arg-type]


def _detect(path: Path, raw: str) -> Format:
    stripped = raw.lstrip()
    json_name = path.suffix.lower() in (".json", ".jsonl", ".ndjson")
    if path.suffix == ".txt" or (stripped[:1] not in "[{" and not json_name):
        return "text"
    if stripped[:1] not in "[{":
        raise FormatError(f"{path}: a {path.suffix} file that does not start with JSON")
    first = stripped.split("\n", 1)[0].strip()
    try:
        first_value = json.loads(first)
        multi = len([ln for ln in raw.splitlines() if ln.strip()]) > 1
    except json.JSONDecodeError:
        first_value, multi = None, False
    if first_value is not None and multi:
        if _is_message(first_value) or _is_message_list(first_value):
            return "messages-jsonl"
        if isinstance(first_value, dict) and _message_key(first_value):
            return "messages-jsonl"
        if isinstance(first_value, dict):
            return "traces-jsonl"
        raise FormatError(f"{path}: JSON lines that are neither chat records nor trace records")
    try:
        json.loads(raw)
    except json.JSONDecodeError as exc:
        if first_value is not None or json_name:
            raise FormatError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
        return "text"
    return "messages-json"


def write_document(doc: Document, path: str | Path) -> None:
    """Write ``doc`` in its own format (JSON keeps 2-space indentation only if it was multi-line)."""
    path = Path(path)
    if doc.format == "text":
        path.write_text(doc.root, encoding="utf-8")
    elif doc.format == "messages-json":
        path.write_text(json.dumps(doc.root[0], ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    else:
        path.write_text("".join(("" if v is None else json.dumps(v, ensure_ascii=False)) + "\n" for v in doc.root),
                        encoding="utf-8")
