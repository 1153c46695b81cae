"""What an image or a document in a message costs, by the provider's documented rule.

Providers bill an image by its pixel size, not by the bytes of its base64 text: the size is read from the
image's header (PNG, JPEG, GIF, WebP) without decoding the picture, and the tokens follow the rule of the
provider the counter stands for (:data:`IMAGE_RULES`):

* ``"anthropic"`` — the image is first scaled down (aspect kept) so that its long edge is at most 1,568 px
  and it holds at most ~1.15 megapixels (1,205,862 px: the largest sizes Anthropic's table lists unscaled,
  e.g. 1092x1092), then costs ``width * height / 750`` tokens (a 1024x1024 image: 1,398; at most ~1,600).
* ``"openai"`` — ``detail: "low"``: 85 tokens. High detail (``"high"``, ``"auto"`` and no detail, counted
  as high: the budget must hold the worst case): scaled to fit 2048x2048, then so that its shortest side is
  at most 768 px, then 85 + 170 per 512-px tile (a 1024x1024 image: 768x768, 4 tiles, 765 tokens).

An image whose size cannot be read (a URL, a file id, an unknown format, truncated data) costs
:data:`UNKNOWN_IMAGE_TOKENS` — the most the Anthropic rule can bill one image, and more than OpenAI bills
any image that fits 2048x768 — so the budget is not broken by what freemem cannot see.

Documents (Anthropic ``document`` blocks, LangChain/OpenAI ``file`` blocks, OpenAI Responses ``input_file``):
a plain-text document costs its text's tokens; a PDF costs :data:`PDF_PAGE_TOKENS` per page (pages counted
from the PDF's page objects; Anthropic documents 1,500-3,000 text tokens per page plus the page's image, which
OpenAI's file inputs send as well); a document that cannot be read (a URL, a file id) costs
:data:`UNKNOWN_DOCUMENT_TOKENS` (one PDF page).

The module is plain Python (``base64``, ``struct``): no image library, no decoding of pixel data.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from freemem.core.errors import ConfigError

__all__ = [
    "DEFAULT_IMAGE_RULE",
    "IMAGE_RULES",
    "PDF_PAGE_TOKENS",
    "UNKNOWN_DOCUMENT_TOKENS",
    "UNKNOWN_IMAGE_TOKENS",
    "Media",
    "anthropic_image_tokens",
    "check_image_rule",
    "image_size",
    "media_of",
    "media_tokens",
    "openai_image_tokens",
]

#: The rules :func:`media_tokens` knows.
IMAGE_RULES: tuple[str, ...] = ("anthropic", "openai")
#: The rule used when the counter names none (the larger count of the two for most images).
DEFAULT_IMAGE_RULE = "anthropic"
#: An image whose pixel size is unknown: the Anthropic maximum (~1.15 MP / 750).
UNKNOWN_IMAGE_TOKENS = 1600
#: One PDF page: Anthropic's 1,500-3,000 text tokens per page, taken at 3,000 to hold the page's image too.
PDF_PAGE_TOKENS = 3000
#: A document that cannot be read (a URL, a file id): one PDF page.
UNKNOWN_DOCUMENT_TOKENS = PDF_PAGE_TOKENS

_ANTHROPIC_LONG_EDGE = 1568
_ANTHROPIC_MAX_PIXELS = int(1.15 * 2**20)
_ANTHROPIC_PIXELS_PER_TOKEN = 750
_OPENAI_BASE, _OPENAI_TILE, _OPENAI_TILE_PX = 85, 170, 512


def check_image_rule(rule: str) -> str:
    """``rule`` if it is one of :data:`IMAGE_RULES`, else a :class:`ConfigError`."""
    if rule not in IMAGE_RULES:
        raise ConfigError(f"unknown image rule {rule!r}; valid rules: {', '.join(IMAGE_RULES)}")
    return rule


def anthropic_image_tokens(width: int, height: int) -> int:
    """Anthropic's rule: scale down to a 1,568-px long edge and ~1.15 MP, then ``w * h / 750``."""
    w, h = float(width), float(height)
    scale = min(1.0, _ANTHROPIC_LONG_EDGE / max(w, h), math.sqrt(_ANTHROPIC_MAX_PIXELS / (w * h)))
    w, h = math.floor(w * scale), math.floor(h * scale)
    return max(1, math.ceil(w * h / _ANTHROPIC_PIXELS_PER_TOKEN))


def openai_image_tokens(width: int, height: int, detail: str | None = None) -> int:
    """OpenAI's rule (GPT-4o family): 85 at low detail; else fit 2048x2048, shortest side at most 768,
    then 85 + 170 per 512-px tile."""
    if detail == "low":
        return _OPENAI_BASE
    w, h = float(width), float(height)
    if max(w, h) > 2048:
        s = 2048 / max(w, h)
        w, h = w * s, h * s
    if min(w, h) > 768:
        s = 768 / min(w, h)
        w, h = w * s, h * s
    tiles = math.ceil(math.floor(w) / _OPENAI_TILE_PX) * math.ceil(math.floor(h) / _OPENAI_TILE_PX)
    return _OPENAI_BASE + _OPENAI_TILE * max(1, tiles)


# -- image headers ----------------------------------------------------------------------------------------
def image_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` read from a PNG, JPEG, GIF or WebP header, or None (another format, truncated)."""
    try:
        if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
            return _positive(*struct.unpack(">II", data[16:24]))
        if data[:6] in (b"GIF87a", b"GIF89a"):
            return _positive(*struct.unpack("<HH", data[6:10]))
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp_size(data)
        if data[:3] == b"\xff\xd8\xff":
            return _jpeg_size(data)
    except struct.error:
        return None
    return None


def _positive(width: int, height: int) -> tuple[int, int] | None:
    return (width, height) if width > 0 and height > 0 else None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 ":  # lossy: a key frame's start code, then 14-bit width and height
        if data[23:26] != b"\x9d\x01\x2a":
            return None
        w, h = struct.unpack("<HH", data[26:30])
        return _positive(w & 0x3FFF, h & 0x3FFF)
    if chunk == b"VP8L":  # lossless: signature 0x2f, then 14-bit width-1 and height-1
        if data[20:21] != b"\x2f":
            return None
        bits = int.from_bytes(data[21:25], "little")
        return _positive((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8X":  # extended: 24-bit canvas width-1 and height-1
        if len(data) < 30:
            return None
        return _positive(int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1)
    return None


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None  # lost sync: not a marker where one must be
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        if marker in _JPEG_SOF:
            height, width = struct.unpack(">HH", data[i + 5:i + 9])
            return _positive(width, height)
        if marker == 0xDA or length < 2:  # image data before any frame header, or a broken length
            return None
        i += 2 + length
    return None


# -- blocks -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Media:
    """An image or a document found in a content block, as much as freemem can read of it."""

    kind: str  # "image" or "document"
    #: The image's pixel size (None: not readable).
    size: tuple[int, int] | None = None
    #: OpenAI's ``detail`` of an image ("low", "high", "auto"), when the block names it.
    detail: str | None = None
    #: A PDF's page count (None: not a PDF or not readable).
    pages: int | None = None
    #: A plain-text document's text.
    text: str | None = None


_DATA_URL = re.compile(r"data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?:;[^,;]*)*?;base64,", re.IGNORECASE)
#: A JPEG's frame header may come after a large EXIF block: the first bytes decoded, then all of it.
_HEAD_CHARS = 65536


def _data_url(url: Any) -> tuple[str | None, str] | None:
    """``(mime type, base64 payload)`` of a ``data:`` URL, else None."""
    if not isinstance(url, str) or not url[:5].lower() == "data:":
        return None
    m = _DATA_URL.match(url)
    if m is None:
        return None
    return m.group("mime"), url[m.end():]


def _b64(payload: str, limit: int | None = None) -> bytes:
    text = payload if limit is None else payload[: limit - limit % 4]
    try:
        return base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError):
        return b""


class _Cache:
    """Media read from base64 payloads, keyed by the payload string (its hash is cached on the object, so a
    thread's images are decoded once, not at every step). Bounded LRU."""

    def __init__(self, size: int = 512) -> None:
        self._items: OrderedDict[tuple[str, str, str | None], Media] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, kind: str, payload: str, mime: str | None, read: Callable[[], Media]) -> Media:
        key = (kind, payload, mime)
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                return hit
        value = read()
        with self._lock:
            self._items[key] = value
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return value


_CACHE = _Cache()


def _image_from_b64(payload: str, detail: str | None) -> Media:
    def read() -> Media:
        size = image_size(_b64(payload, _HEAD_CHARS))
        if size is None and len(payload) > _HEAD_CHARS:
            size = image_size(_b64(payload))
        return Media("image", size=size)

    found = _CACHE.get("image", payload, None, read)
    return Media("image", size=found.size, detail=detail)


_PDF_PAGE = re.compile(rb"/Type\s*/Page(?![a-zA-Z])")
_PDF_COUNT = re.compile(rb"/Type\s*/Pages\b[^>]*?/Count\s+(\d+)|/Count\s+(\d+)[^>]*?/Type\s*/Pages\b")


def _document_from_b64(payload: str, mime: str | None) -> Media:
    def read() -> Media:
        data = _b64(payload)
        if data[:5] == b"%PDF-" or (mime or "").lower() == "application/pdf":
            pages = len(_PDF_PAGE.findall(data))
            if not pages:  # compressed object streams hide the pages: the page tree's count says it
                counts = [int(a or b) for a, b in _PDF_COUNT.findall(data)]
                pages = max(counts, default=0)
            return Media("document", pages=pages or None)
        if (mime or "").lower().startswith("text/"):
            return Media("document", text=data.decode("utf-8", "replace"))
        return Media("document")

    return _CACHE.get("document", payload, mime, read)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def media_of(block: Mapping[str, Any]) -> Media | None:
    """The image or document a content block carries, in any of the shapes LangChain, OpenAI (Chat
    Completions and Responses) and Anthropic use; None for any other block."""
    kind = block.get("type")
    source = block.get("source")
    if kind in ("image_url", "input_image"):  # OpenAI: {"image_url": {"url", "detail"}} or a plain URL
        ref = block.get("image_url")
        detail = _str(block.get("detail"))
        if isinstance(ref, Mapping):
            detail = _str(ref.get("detail")) or detail
            ref = ref.get("url")
        parsed = _data_url(ref)
        return _image_from_b64(parsed[1], detail) if parsed else Media("image", detail=detail)
    if kind == "image":
        detail = _str(block.get("detail"))
        if isinstance(source, Mapping):  # Anthropic: {"source": {"type": "base64", "data"}} / url / file
            data = source.get("data")
            if source.get("type") == "base64" and isinstance(data, str):
                return _image_from_b64(data, detail)
            parsed = _data_url(source.get("url"))
            return _image_from_b64(parsed[1], detail) if parsed else Media("image", detail=detail)
        # LangChain: {"base64"} (v1) or {"source_type": "base64", "data"} (v0.3), or a URL / file id
        data = block.get("base64")
        if not isinstance(data, str) and block.get("source_type") == "base64":
            data = block.get("data")
        if isinstance(data, str):
            return _image_from_b64(data, detail)
        parsed = _data_url(block.get("url"))
        return _image_from_b64(parsed[1], detail) if parsed else Media("image", detail=detail)
    if kind in ("document", "file", "input_file", "text-plain"):
        mime = _str(block.get("mime_type")) or _str(block.get("media_type"))
        if isinstance(source, Mapping):  # Anthropic
            mime = _str(source.get("media_type")) or mime
            stype = source.get("type")
            if stype == "text" and isinstance(source.get("data"), str):
                return Media("document", text=source["data"])
            if stype == "base64" and isinstance(source.get("data"), str):
                return _document_from_b64(source["data"], mime)
            if stype == "content" and isinstance(source.get("content"), str):
                return Media("document", text=source["content"])
            return Media("document")
        if kind == "text-plain" and isinstance(block.get("text"), str):  # LangChain's plain-text file block
            return Media("document", text=block["text"])
        ref = block.get("file")  # OpenAI Chat Completions: {"file": {"file_data": "data:...;base64,..."}}
        data = ref.get("file_data") if isinstance(ref, Mapping) else block.get("file_data")
        data = data if isinstance(data, str) else block.get("base64")
        if not isinstance(data, str) and block.get("source_type") == "base64":
            data = block.get("data")
        if isinstance(data, str):
            parsed = _data_url(data)
            if parsed:
                mime, data = parsed[0] or mime, parsed[1]
            return _document_from_b64(data, mime)
        if isinstance(block.get("text"), str):
            return Media("document", text=block["text"])
        return Media("document")
    return None


def media_tokens(media: Media, rule: str, count_text: Callable[[str], int]) -> int:
    """Tokens ``media`` costs under ``rule`` (one of :data:`IMAGE_RULES`); ``count_text`` counts a
    plain-text document's text."""
    if media.kind == "image":
        if media.size is None:
            return 85 if rule == "openai" and media.detail == "low" else UNKNOWN_IMAGE_TOKENS
        if rule == "openai":
            return openai_image_tokens(*media.size, detail=media.detail)
        return anthropic_image_tokens(*media.size)
    if media.text is not None:
        return count_text(media.text)
    if media.pages is not None:
        return PDF_PAGE_TOKENS * media.pages
    return UNKNOWN_DOCUMENT_TOKENS
