"""Read and write the file formats ``freemem clean`` and the benchmarks take, keeping records and fields;
and write any file freemem produces atomically.

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

Faithful round trips. Writing a document back keeps what the file looked like: a UTF-8 byte-order mark,
its line endings (``\\r\\n`` stays ``\\r\\n``; text is read and written with ``newline=""``), a final newline
or its absence, and the JSON style — compact JSON stays on one line (with the separators it used), indented
JSON keeps its indentation, ASCII-escaped JSON stays ASCII. JSON lines that were not changed are written
back byte for byte. JSON lines are split on ``\\n`` only (never ``str.splitlines``, which also splits on
U+2028/U+2029 and other characters JSON strings may hold raw), so freemem can read its own output.
A lone surrogate (a ``"\\ud800"`` escape in the input) is written back as the same escape, never as bytes
UTF-8 cannot encode.

Which list is a conversation. A list of objects of which any has a ``role`` is a message list, and then
every element must be a well-formed chat message: a message without ``role`` is a :class:`FormatError`
naming it, not a reason to read the file as plain-text traces (which would drop the protection of the
system prompt and of the user's messages).

Atomic writes. :func:`write_files` (and :func:`write_text_atomic`, :func:`atomic_path`) stage each file in
a temporary file in the destination's own folder, ``fsync`` it, then ``os.replace`` it over the
destination: a failed or interrupted write leaves the old file (an input written over with ``--out``)
intact and no partial file behind. Several files are all staged before any is replaced, so a failure while
preparing the second never leaves the first written.
"""

from __future__ import annotations

import codecs
import functools
import json
import os
import re
import secrets
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeGuard

from freemem.core.errors import ConfigError, FormatError, StoreError

__all__ = [
    "FORMATS",
    "Document",
    "Item",
    "JsonStyle",
    "atomic_path",
    "check_destination",
    "dumps_json",
    "read_document",
    "render_document",
    "write_document",
    "write_files",
    "write_text_atomic",
]

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
    #: The tool definitions the record sends with its messages (a ``tools`` list beside them), else None.
    tools: list[Any] | None = None


@dataclass(frozen=True)
class JsonStyle:
    """How JSON was written in the source file, so changed values are written the same way."""

    indent: int | str | None = None  # None: one line
    separators: tuple[str, str] = (", ", ": ")
    ensure_ascii: bool = False


@dataclass
class Document:
    format: Format
    items: list[Item]
    root: Any  # the parsed records (JSON value, list of line values, or the text)
    #: The file started with a UTF-8 byte-order mark (written back with it).
    bom: bool = False
    #: The line ending of the file ("\r\n" when every line ended so).
    newline: str = "\n"
    #: The file ended with a line ending.
    final_newline: bool = True
    style: JsonStyle = field(default_factory=JsonStyle)
    #: The source text (without the BOM): a JSON document nothing changed in is written back as it was.
    raw: str | None = field(default=None, repr=False)
    #: JSON lines: the source split on "\n" (each piece keeps a "\r" it had); unchanged lines are kept.
    pieces: list[str] | None = field(default=None, repr=False)
    #: JSON lines changed through an item's ``put`` (indices into ``root``); ``-1`` for a JSON document.
    dirty: set[int] = field(default_factory=set, repr=False)


# -- reading ------------------------------------------------------------------------------------------------


def _is_message(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("role"), str)


def _looks_like_messages(value: Any) -> TypeGuard[list[Any]]:
    """A non-empty list of objects of which at least one has a ``role``: meant as a conversation."""
    return (isinstance(value, list) and bool(value) and all(isinstance(m, dict) for m in value)
            and any("role" in m for m in value))


def _a(value: Any) -> str:
    """``"an int"``, ``"a str"``: the type of ``value`` with its article, for error messages."""
    name = type(value).__name__
    return ("an " if name[:1] in "aeiou" else "a ") + name


def _message_problem(msg: Any) -> str | None:
    """What makes ``msg`` not a chat message freemem can clean, or None."""
    if not isinstance(msg, dict):
        return f"is {_a(msg)}, not an object"
    if "role" not in msg:
        keys = ", ".join(list(msg)[:4]) or "none"
        return f"has no 'role' (keys: {keys}); every chat message needs one"
    if not isinstance(msg["role"], str):
        return f"has a 'role' that is {_a(msg['role'])}, not a string"
    content = msg.get("content")
    if content is not None and not isinstance(content, (str, list)):
        return f"has a 'content' that is {_a(content)}, not a string or a list of parts"
    calls = msg.get("tool_calls")
    if calls is not None:
        if not isinstance(calls, list):
            return f"has 'tool_calls' that is {_a(calls)}, not a list"
        for j, call in enumerate(calls):
            if not isinstance(call, dict):
                return f"has tool call {j} that is {_a(call)}, not an object"
            fn = call.get("function")
            if fn is not None and not isinstance(fn, dict):
                return f"has tool call {j} whose 'function' is {_a(fn)}, not an object"
    return None


def _check_messages(messages: Sequence[Any], where: str) -> None:
    for i, msg in enumerate(messages):
        problem = _message_problem(msg)
        if problem:
            raise FormatError(f"{where}, message {i} {problem}")


def _message_key(record: dict[str, Any], where: str) -> str | None:
    keys = [k for k in MESSAGE_KEYS if k in record] + [k for k in record if k not in MESSAGE_KEYS]
    for key in keys:
        value = record.get(key)
        if _looks_like_messages(value):
            _check_messages(value, f"{where} ({key!r})")
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


def _setter(container: Any, key: Any, touch: Callable[[], None]) -> Callable[[Any], None]:
    def put(value: Any) -> None:
        container[key] = value
        touch()

    return put


def _label(record: Any, index: int) -> str:
    if isinstance(record, dict):
        for key in ("instance_id", "task_id", "id", "idx", "name"):
            if key in record and isinstance(record[key], (str, int)):
                return f"{key}={record[key]}"
    return f"#{index}"


def _record_items(record: Any, index: int, container: Any, key: Any, text_field: str | None,
                  want: str | None, where: str, touch: Callable[[], None]) -> list[Item]:
    label = _label(record, index)
    if want != "traces" and _looks_like_messages(record):
        _check_messages(record, where)
        return [Item(label, "messages", record, put=_setter(container, key, touch))]
    if not isinstance(record, dict):
        raise FormatError(f"{where} is {_a(record)}, not an object or a message list")
    if want != "traces":
        if "role" in record:
            problem = _message_problem(record)
            raise FormatError(f"{where} is a chat message among records"
                              + (f" and {problem}" if problem else "") + "; a conversation is one message "
                              "per line or one message list per record")
        mkey = _message_key(record, where)
        if mkey is not None:
            tools = record.get("tools")
            return [Item(label, "messages", record[mkey], put=_setter(record, mkey, touch),
                         tools=list(tools) if isinstance(tools, list) else None)]
    tkey = _text_key(record, text_field)
    if tkey is None:
        raise FormatError(f"{where} ({label}) holds no message list and no text field "
                          f"(looked for {', '.join(TEXT_FIELDS)}; name one with --field)")
    value = record[tkey]
    question = _question(record)
    if isinstance(value, list):
        return [Item(f"{label}[{j}]", "text", v, question, _setter(value, j, touch)) for j, v in enumerate(value)]
    return [Item(label, "text", value, question, _setter(record, tkey, touch))]


def _loads(text: str, where: str) -> Any:
    """``json.loads`` whose every failure is one FormatError line (bad JSON, depth, huge integers)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise FormatError(f"{where}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except RecursionError:
        raise FormatError(f"{where}: JSON nested too deeply to read") from None
    except ValueError as exc:  # int() limits: "Exceeds the limit (4300 digits) for integer string conversion"
        raise FormatError(f"{where}: unreadable JSON value ({str(exc).split(';')[0]})") from None


def _try_loads(text: str) -> Any:
    """The JSON value of ``text``, or ``_INVALID`` (for detection; errors are reported later)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return _INVALID


_INVALID = object()


def _json_style(body: str) -> JsonStyle:
    """The style of JSON text ``body`` (its first key separator and indentation decide)."""
    ensure_ascii = body.isascii() and "\\u" in body
    match = re.search(r'":(\s?)', body)
    key_sep = ": " if match is None or match.group(1) else ":"
    if "\n" not in body.strip():
        return JsonStyle(None, (", " if key_sep == ": " else ",", key_sep), ensure_ascii)
    lines = body.strip().split("\n")
    lead = re.match(r"[ \t]*", lines[1]).group(0) if len(lines) > 1 else "  "  # type: ignore[union-attr]
    indent: int | str = "\t" if lead.startswith("\t") else len(lead)
    return JsonStyle(indent, (",", key_sep), ensure_ascii)


def _newline_of(raw: str) -> str:
    crlf = raw.count("\r\n")
    return "\r\n" if crlf and crlf == raw.count("\n") else "\n"


def read_document(path: str | Path, *, format: str = "auto", text_field: str | None = None) -> Document:
    """Parse ``path`` into a :class:`Document`. Raises :class:`FormatError` with one clear line."""
    path = Path(path)
    if format not in FORMATS:
        raise FormatError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FormatError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise FormatError(f"{path}: is a directory") from None
    except OSError as exc:
        raise FormatError(f"{path}: {exc.strerror or exc}") from None
    bom = data.startswith(codecs.BOM_UTF8)
    try:
        raw = data[len(codecs.BOM_UTF8) if bom else 0:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    if not raw.strip():
        raise FormatError(f"{path}: file is empty")
    newline, final_newline = _newline_of(raw), raw.endswith("\n")
    lines: list[Any] | None = None
    if format == "auto":
        fmt, lines = _detect(path, raw)
    else:
        fmt = format  # type: ignore[assignment]
    if fmt == "text":
        doc = Document("text", [], raw, bom=bom, newline=newline, final_newline=final_newline)
        doc.items.append(Item(path.name, "text", raw, put=lambda v: setattr(doc, "root", v)))
        return doc
    if fmt == "messages-json":
        root = _loads(raw, str(path))
        doc = Document("messages-json", [], [root], bom=bom, newline=newline, final_newline=final_newline,
                       style=_json_style(raw), raw=raw)
        holder = doc.root

        def touch() -> None:
            doc.dirty.add(-1)

        if _looks_like_messages(root):
            _check_messages(root, str(path))
            doc.items = [Item(path.name, "messages", root, put=_setter(holder, 0, touch))]
        elif isinstance(root, dict) and _message_key(root, str(path)):
            doc.items = _record_items(root, 0, holder, 0, text_field, "messages", str(path), touch)
        elif isinstance(root, list):
            doc.items = [it for i, rec in enumerate(root)
                         for it in _record_items(rec, i, root, i, text_field, None, f"{path}: record {i}", touch)]
        else:
            raise FormatError(f"{path}: JSON holds no chat messages (expected a message list or records)")
        return doc
    # JSON lines, split on "\n" only: U+2028/U+2029 (and \x0b, \x1c...) may stand raw inside JSON strings.
    pieces = raw.split("\n")
    if lines is None:
        lines = [_loads(p, f"{path}: line {n}") if p.strip() else None for n, p in enumerate(pieces, 1)]
    values = [(i, v) for i, v in enumerate(lines) if v is not None]
    doc = Document(fmt, [], lines, bom=bom, newline=newline, final_newline=final_newline,
                   style=_json_style(pieces[next(i for i, _ in values)] if values else "{}"), pieces=pieces)
    if fmt == "messages-jsonl" and values and any(isinstance(v, dict) and "role" in v for _, v in values):
        # One conversation, one message per line: every line must then be a message.
        for i, v in values:
            problem = _message_problem(v)
            if problem:
                raise FormatError(f"{path}: line {i + 1}: the chat message {problem}")
        msgs = [v for _, v in values]

        def put_all(new: list[Any]) -> None:
            for (i, old), m in zip(values, new, strict=False):
                if m is not old:
                    lines[i] = m
                    doc.dirty.add(i)

        doc.items = [Item(path.name, "messages", msgs, put=put_all)]
        return doc
    want = "traces" if fmt == "traces-jsonl" else "messages"
    items: list[Item] = []
    for i, v in values:
        items.extend(_record_items(v, i, lines, i, text_field, want, f"{path}: line {i + 1}",
                                   functools.partial(doc.dirty.add, i)))
    doc.items = items
    return doc


def _detect(path: Path, raw: str) -> tuple[Format, list[Any] | None]:
    """The format of ``raw``, and its parsed JSON lines when that is what it holds."""
    stripped = raw.lstrip()
    json_name = path.suffix.lower() in (".json", ".jsonl", ".ndjson")
    if path.suffix == ".txt" or (stripped[:1] not in "[{" and not json_name):
        return "text", None
    if stripped[:1] not in "[{":
        raise FormatError(f"{path}: a {path.suffix} file that does not start with JSON")
    pieces = raw.split("\n")
    first_value = _try_loads(stripped.split("\n", 1)[0])
    multi = sum(1 for p in pieces if p.strip()) > 1
    if first_value is not _INVALID and multi:
        lines = [_loads(p, f"{path}: line {n}") if p.strip() else None for n, p in enumerate(pieces, 1)]
        values = [v for v in lines if v is not None]
        if any(isinstance(v, dict) and "role" in v for v in values):
            return "messages-jsonl", lines
        if any(_looks_like_messages(v) for v in values):
            return "messages-jsonl", lines
        if any(isinstance(v, dict) and any(_looks_like_messages(x) for x in v.values()) for v in values):
            return "messages-jsonl", lines
        if all(isinstance(v, dict) for v in values):
            return "traces-jsonl", lines
        raise FormatError(f"{path}: JSON lines that are neither chat records nor trace records")
    whole = _try_loads(raw)
    if whole is _INVALID:
        if first_value is not _INVALID or json_name:
            _loads(raw, str(path))  # raises the one-line reason
        return "text", None
    return "messages-json", None


# -- writing ------------------------------------------------------------------------------------------------

_SURROGATE = re.compile("[\ud800-\udfff]")


def dumps_json(value: Any, *, indent: int | str | None = 2, separators: tuple[str, str] | None = None,
               ensure_ascii: bool = False, default: Callable[[Any], Any] | None = None) -> str:
    """``json.dumps`` that is always encodable as UTF-8: lone surrogates become ``\\uXXXX`` escapes.

    With ``ensure_ascii=False`` json writes every character raw, and a lone surrogate (from a ``"\\ud800"``
    escape in the input) cannot be encoded; raw characters only occur inside JSON strings, where the escape
    means the same character."""
    try:
        text = json.dumps(value, indent=indent, separators=separators, ensure_ascii=ensure_ascii, default=default)
    except RecursionError:
        raise FormatError("a value nested too deeply to write as JSON") from None
    except ValueError as exc:
        raise FormatError(f"a value that cannot be written as JSON ({str(exc).split(';')[0]})") from None
    if not ensure_ascii:
        text = _SURROGATE.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text)
    return text


def _dump_styled(value: Any, style: JsonStyle) -> str:
    return dumps_json(value, indent=style.indent, separators=style.separators, ensure_ascii=style.ensure_ascii)


def render_document(doc: Document) -> bytes:
    """The bytes :func:`write_document` writes: ``doc`` in its own format and its source's style."""
    nl = doc.newline
    if doc.format == "text":
        text = doc.root
    elif doc.format == "messages-json":
        if not doc.dirty and doc.raw is not None:
            text = doc.raw
        else:
            text = _dump_styled(doc.root[0], doc.style)
            text = text.replace("\n", nl)  # json escapes newlines inside strings: every "\n" is structural
            if doc.final_newline:
                text += nl
    else:
        pieces = doc.pieces
        if pieces is None:  # a document built by hand: one value per line
            out = [("" if v is None else _dump_styled(v, doc.style)) + nl for v in doc.root]
            text = "".join(out)
        else:
            out = list(pieces)
            for i in doc.dirty:
                cr = "\r" if pieces[i].endswith("\r") else ""
                out[i] = _dump_styled(doc.root[i], doc.style) + cr
            text = "\n".join(out)
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as exc:  # text format: cannot happen for text read from UTF-8, kept as a guard
        raise FormatError(f"the result holds a character UTF-8 cannot encode (at {exc.start})") from None
    return (codecs.BOM_UTF8 + data) if doc.bom else data


def write_document(doc: Document, path: str | Path) -> None:
    """Write ``doc`` atomically, in its own format and style (compact JSON stays compact, indented JSON
    keeps its indentation, line endings and a byte-order mark stay; unchanged JSON lines stay byte-exact)."""
    write_files([(path, render_document(doc))])


def check_destination(path: str | Path, what: str = "output") -> Path:
    """``path`` if a file can be written there; :class:`ConfigError` naming the problem otherwise.

    Checked before any work, so a command never does its work and then fails to save it."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ConfigError(f"cannot write the {what} to {path}: it is a folder")
    if not parent.exists():
        raise ConfigError(f"cannot write the {what} to {path}: folder {parent} does not exist")
    if not parent.is_dir():
        raise ConfigError(f"cannot write the {what} to {path}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write the {what} to {path}: folder {parent} is not writable")
    return path


def _target(path: str | Path) -> Path:
    path = Path(path)
    # Replace what a symlink points to, not the link itself.
    return path.resolve() if path.is_symlink() else path


def _stage(target: Path, suffix: str = ".tmp") -> tuple[Path, int]:
    """A new temporary file next to ``target`` (same folder, so ``os.replace`` is a rename), open for writing.

    Created with mode 0666 & ~umask like any new file, or with the mode of the file it will replace."""
    temp = target.with_name(f".{target.name}.{secrets.token_hex(6)}{suffix}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        if target.exists():
            os.fchmod(fd, target.stat().st_mode & 0o7777)
    except OSError:
        pass  # keeping the mode is a courtesy; the data matters
    return temp, fd


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot sync a folder; the rename itself is still atomic
    finally:
        os.close(fd)


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def write_files(files: Sequence[tuple[str | Path, bytes]]) -> None:
    """Write every ``(path, data)`` atomically, all or (as far as the OS allows) none.

    Each file is staged in a temporary file in its destination's folder and fsynced; only when all are staged
    are they renamed over their destinations (``os.replace``). A failure while staging removes the
    temporary files and leaves every destination as it was; raises :class:`StoreError` saying so."""
    staged: list[tuple[Path, Path]] = []
    try:
        for path, data in files:
            target = _target(path)
            try:
                temp, fd = _stage(target)
            except OSError as exc:
                raise StoreError(f"cannot write {path}: {exc.strerror or exc}; nothing was written") from None
            staged.append((temp, target))
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            except OSError as exc:
                raise StoreError(f"cannot write {path}: {exc.strerror or exc}; nothing was written") from None
            finally:
                os.close(fd)
        for i, (temp, target) in enumerate(staged):
            try:
                os.replace(temp, target)
            except OSError as exc:
                done = ", ".join(str(t) for _, t in staged[:i])
                raise StoreError(f"cannot write {target}: {exc.strerror or exc}"
                                 + (f" (already written: {done})" if done else "; nothing was written")) from None
        for folder in {target.parent for _, target in staged}:
            _fsync_folder(folder)
    finally:
        for temp, _ in staged:
            if temp.exists():
                _unlink(temp)


def write_text_atomic(path: str | Path, text: str, *, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically (see :func:`write_files`); newlines are written as given."""
    try:
        data = text.encode(encoding)
    except UnicodeEncodeError as exc:
        raise FormatError(f"cannot write {path}: a character {encoding} cannot encode (at {exc.start})") from None
    write_files([(path, data)])


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path next to ``path`` (same suffix, so tools that read the format from the name work) to
    write to; renamed over ``path`` when the block succeeds, removed when it raises.

    For writers that want a file name rather than bytes (``matplotlib``'s ``savefig``)."""
    target = _target(path)
    try:
        temp, fd = _stage(target, target.suffix)
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {exc.strerror or exc}; nothing was written") from None
    os.close(fd)
    try:
        yield temp
        fd = os.open(temp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.replace(temp, target)
        except OSError as exc:
            raise StoreError(f"cannot write {path}: {exc.strerror or exc}; nothing was written") from None
        _fsync_folder(target.parent)
    finally:
        if temp.exists():
            _unlink(temp)
