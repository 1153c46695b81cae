"""Fixtures for the serving tests: a real llama.cpp server on a tiny GGUF model, and a scriptable stub server.

The real server needs llama-cpp-python (``pip install "llama-cpp-python[server]"``); tests that use it skip with
a clear reason when it is not importable. The model files are written by the test session itself (random
weights, the real Qwen3 tokenizer, a LoRA adapter): no downloads.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:  # `tests.support` is imported as a package from the repository root
    sys.path.insert(0, str(_ROOT))

from tests.serving.stub_openai import StubServer, start_stub  # noqa: E402
from tests.support.llama_server import LlamaServer, free_port, llama_cpp_available, start_llama_server  # noqa: E402
from tests.support.tiny_gguf import TinyModelFiles, write_tiny_model  # noqa: E402

LLAMA_CPP_MISSING = 'llama-cpp-python is not installed (pip install "llama-cpp-python[server]")'


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> TinyModelFiles:
    """The tiny Qwen3 GGUF model and its LoRA adapter, written once per session."""
    pytest.importorskip("gguf", reason="the gguf package is needed to write the tiny test model")
    return write_tiny_model(tmp_path_factory.mktemp("tiny-gguf"), seed=0)


def _require_llama_cpp() -> None:
    if not llama_cpp_available():
        pytest.skip(LLAMA_CPP_MISSING)


@pytest.fixture(scope="session")
def llama_server(tiny_model: TinyModelFiles, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """A session-wide llama.cpp server: alias ``tiny`` (base) and ``tiny:free`` (base + LoRA)."""
    _require_llama_cpp()
    server = start_llama_server(tiny_model.model, tiny_model.adapter, workdir=tmp_path_factory.mktemp("llama"),
                                n_ctx=4096)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def start_server(tiny_model: TinyModelFiles, tmp_path: Path) -> Iterator[Callable[..., LlamaServer]]:
    """Start private llama.cpp servers (for tests that kill them); all are stopped afterwards."""
    _require_llama_cpp()
    started: list[LlamaServer] = []

    def start(**kwargs: Any) -> LlamaServer:
        server = start_llama_server(tiny_model.model, tiny_model.adapter, workdir=tmp_path, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def dead_url() -> str:
    """A loopback base URL where nothing listens (connections are refused at once)."""
    return f"http://127.0.0.1:{free_port()}/v1"


@pytest.fixture
def stub_server() -> Iterator[Callable[[], StubServer]]:
    """Start stub servers on demand; all are shut down afterwards."""
    servers: list[StubServer] = []

    def start() -> StubServer:
        servers.append(start_stub())
        return servers[-1]

    yield start
    for stub in servers:
        stub.close()
