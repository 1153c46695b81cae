"""Images and documents are counted by the provider's documented rule from their real size (issue 22)."""

from __future__ import annotations

import base64
import struct
import zlib

import pytest
from langchain_core.messages import HumanMessage

from freemem import FreeMemory
from freemem.config import Budget
from freemem.core.errors import ConfigError
from freemem.core.media import (
    PDF_PAGE_TOKENS,
    UNKNOWN_DOCUMENT_TOKENS,
    UNKNOWN_IMAGE_TOKENS,
    anthropic_image_tokens,
    image_size,
    media_of,
    openai_image_tokens,
)
from freemem.core.views import count_messages
from freemem.tokens import get_counter


# -- real headers, written by hand (no image library) ----------------------------------------------------
def png(width: int, height: int) -> bytes:
    """A valid PNG: signature, IHDR, one IDAT of zero rows, IEND."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"".join(b"\x00" + b"\x00" * width for _ in range(min(height, 4))))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def jpeg(width: int, height: int, exif_bytes: int = 0) -> bytes:
    """SOI, an APP0 (JFIF), an optional large APP1 (EXIF), a DQT, SOF0 with the size, then EOI."""
    out = b"\xff\xd8"
    out += b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    while exif_bytes > 0:
        n = min(exif_bytes, 65000)
        out += b"\xff\xe1" + struct.pack(">H", n + 2) + b"E" * n
        exif_bytes -= n
    out += b"\xff\xdb" + struct.pack(">H", 67) + b"\x00" + bytes(range(64))
    out += b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    return out + b"\xff\xd9"


def gif(width: int, height: int) -> bytes:
    return b"GIF89a" + struct.pack("<HHBBB", width, height, 0, 0, 0) + b";"


def webp_lossy(width: int, height: int) -> bytes:
    frame = b"\x00\x00\x00" + b"\x9d\x01\x2a" + struct.pack("<HH", width, height) + b"\x00" * 8
    body = b"WEBP" + b"VP8 " + struct.pack("<I", len(frame)) + frame
    return b"RIFF" + struct.pack("<I", len(body)) + body


def webp_lossless(width: int, height: int) -> bytes:
    bits = (width - 1) | ((height - 1) << 14)
    frame = b"\x2f" + struct.pack("<I", bits) + b"\x00" * 6
    body = b"WEBP" + b"VP8L" + struct.pack("<I", len(frame)) + frame
    return b"RIFF" + struct.pack("<I", len(body)) + body


def webp_extended(width: int, height: int) -> bytes:
    frame = b"\x00\x00\x00\x00" + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    body = b"WEBP" + b"VP8X" + struct.pack("<I", len(frame)) + frame
    return b"RIFF" + struct.pack("<I", len(body)) + body


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


FORMATS = {"png": png, "jpeg": jpeg, "gif": gif, "webp-lossy": webp_lossy, "webp-lossless": webp_lossless,
           "webp-extended": webp_extended}


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize(("width", "height"), [(1024, 1024), (1, 1), (3000, 1200), (640, 16383)])
def test_each_format_header_gives_the_real_size(fmt: str, width: int, height: int) -> None:
    if fmt == "gif" or fmt.startswith("webp-l"):
        width, height = min(width, 16383), min(height, 16383)
    assert image_size(FORMATS[fmt](width, height)) == (width, height)


def test_a_jpeg_size_behind_a_large_exif_block_is_found() -> None:
    data = jpeg(800, 600, exif_bytes=150_000)
    assert image_size(data) == (800, 600)
    block = {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64," + b64(data)}}
    found = media_of(block)
    assert found is not None and found.size == (800, 600)


@pytest.mark.parametrize("data", [b"", b"\x89PNG\r\n", b"GIF8", b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"\xff\xd8\xff",
                                  b"not an image at all", png(0, 10), b"\xff\xd8\xff\xe0\x00\x02\x00"])
def test_unreadable_headers_give_no_size(data: bytes) -> None:
    assert image_size(data) is None


def test_the_documented_rules() -> None:
    # Anthropic: w*h/750, after fitting 1568 px and ~1.15 MP; a 1024x1024 image is ~1,400 tokens
    assert anthropic_image_tokens(1024, 1024) == pytest.approx(1398, abs=1)
    assert anthropic_image_tokens(1092, 1092) == pytest.approx(1590, abs=2)  # the table's largest 1:1
    assert anthropic_image_tokens(200, 200) == 54  # the docs' example: ~54 tokens
    assert anthropic_image_tokens(4000, 3000) <= 1610  # scaled down first
    # OpenAI: 85 + 170 per 512-px tile after fitting 2048x2048 and a 768-px shortest side
    assert openai_image_tokens(1024, 1024) == 765  # the docs' example
    assert openai_image_tokens(2048, 4096) == 1105  # the docs' example: 768x1536, 6 tiles
    assert openai_image_tokens(4096, 8192, "low") == 85
    assert openai_image_tokens(100, 100) == 255


def _image_message(data: bytes, shape: str, mime: str = "image/png") -> HumanMessage:
    payload = b64(data)
    block = {
        "openai": {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{payload}", "detail": "high"}},
        "anthropic": {"type": "image", "source": {"type": "base64", "media_type": mime, "data": payload}},
        "langchain": {"type": "image", "base64": payload, "mime_type": mime},
        "langchain-v0": {"type": "image", "source_type": "base64", "data": payload, "mime_type": mime},
        "responses": {"type": "input_image", "image_url": f"data:{mime};base64,{payload}"},
    }[shape]
    return HumanMessage(content=[{"type": "text", "text": "What is in this picture?"}, block])


@pytest.mark.parametrize("shape", ["openai", "anthropic", "langchain", "langchain-v0", "responses"])
def test_a_1024_png_counts_by_the_counters_rule(shape: str) -> None:
    message = _image_message(png(1024, 1024), shape)
    text_only = HumanMessage(content=[{"type": "text", "text": "What is in this picture?"}])
    for counter, rule, expected in (("approx", "anthropic", 1400), ("o200k_base", "openai", 765)):
        memory = FreeMemory(counter=counter)
        assert memory.image_rule == rule
        image = memory.count_messages([message]) - memory.count_messages([text_only])
        assert abs(image - expected) <= 0.2 * expected, (counter, image)
    # the setting overrides the counter's rule
    memory = FreeMemory(counter="approx", budget=Budget(None, image_rule="openai"))
    assert abs(memory.count_messages([message]) - memory.count_messages([text_only]) - 765) <= 153


def test_a_big_screenshot_is_no_longer_eight_tokens() -> None:
    data = png(1920, 1080) + b"\x00" * 300_000  # a 300 KB payload
    memory = FreeMemory(counter="approx")
    count = memory.count_messages([_image_message(data, "openai")])
    assert count > 1400
    assert sum(memory.message_tokens([_image_message(data, "openai")])) == count


def test_images_without_dimensions_get_the_documented_default() -> None:
    url = HumanMessage(content=[{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}])
    low = HumanMessage(content=[{"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}}])
    counter = get_counter("approx")
    assert UNKNOWN_IMAGE_TOKENS <= count_messages(counter, [url], "anthropic") <= UNKNOWN_IMAGE_TOKENS + 20
    assert count_messages(counter, [low], "openai") < count_messages(counter, [url], "openai")


def _pdf(pages: int) -> bytes:
    objs = [b"1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj",
            b"2 0 obj << /Type /Pages /Kids [] /Count %d >> endobj" % pages]
    objs += [b"%d 0 obj << /Type /Page /Parent 2 0 R >> endobj" % (3 + i) for i in range(pages)]
    return b"%PDF-1.7\n" + b"\n".join(objs) + b"\n%%EOF"


def test_documents_are_counted_by_pages_or_text() -> None:
    counter = get_counter("approx")
    pdf = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": b64(_pdf(3))}}
    found = media_of(pdf)
    assert found is not None and found.pages == 3
    openai_file = {"type": "file", "file": {"filename": "a.pdf",
                                            "file_data": "data:application/pdf;base64," + b64(_pdf(2))}}
    assert media_of(openai_file).pages == 2  # type: ignore[union-attr]
    lc_file = {"type": "file", "base64": b64(_pdf(5)), "mime_type": "application/pdf"}
    assert media_of(lc_file).pages == 5  # type: ignore[union-attr]
    text_doc = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "hello " * 500}}
    url_doc = {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}}

    def tokens(block: dict) -> int:  # the block, its "[document part]" placeholder and the message overhead
        return count_messages(counter, [HumanMessage(content=[block])], "anthropic")

    assert 3 * PDF_PAGE_TOKENS <= tokens(pdf) <= 3 * PDF_PAGE_TOKENS + 20
    assert 400 <= tokens(text_doc) <= 720
    assert UNKNOWN_DOCUMENT_TOKENS <= tokens(url_doc) <= UNKNOWN_DOCUMENT_TOKENS + 20


def test_media_are_never_edited_by_a_clean() -> None:
    data = b64(png(800, 600))
    block = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}}
    messages = [{"role": "user", "content": [{"type": "text", "text": "look " * 2000}, block], "id": "u1"},
                {"role": "assistant", "content": "ok " * 3000, "id": "a1"},
                {"role": "user", "content": "and now?", "id": "u2"}]
    memory = FreeMemory(counter="approx", budget=3000, cache=None)
    result = memory.clean(messages)
    after = result.messages if result.messages is not None else messages
    kept = [part for m in after for part in (m.get("content") if isinstance(m.get("content"), list) else [])
            if isinstance(part, dict) and part.get("type") == "image"]
    assert kept == [] or kept == [block]


def test_an_unknown_rule_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        FreeMemory(budget=Budget(None, image_rule="gemini"))
