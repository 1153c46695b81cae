"""Opt-in: the model cleaners against a *real* instruction model through a real llama.cpp server.

Set ``FREEMEM_TEST_GGUF`` to a GGUF file (e.g. what ``../shared/models/get-qwen-coder 0.5b`` or ``1.5b``
prints: Qwen2.5-Coder-Instruct, Q4_K_M) to run them; they are skipped otherwise, and CI keeps the tiny
random-weight model for the protocol (test_serving_llamacpp.py). On 2 CPU cores each model call takes about a
minute (1.5B) here, so the texts are short and there are two model calls in all.

What they pin down (issue 13): ``FreeModuleCleaner(url, model=..., adapter=None)`` with no other settings works
against llama-cpp-python's server (the json_schema form it refuses is detected, json_object used), the answer
is valid constrained JSON, applying it is safe (the answer line survives, every rejection says why), and the
round is inspectable in the ledger event.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from freemem import FreeMemory
from freemem.cleaners.free_module import FreeModuleCleaner
from freemem.config import Triggers
from freemem.core.apply import apply_commands
from freemem.core.context import Context
from freemem.core.errors import CleanerConfigError
from tests.support.llama_server import LlamaServer, llama_cpp_available, start_llama_server

pytestmark = [pytest.mark.llamacpp, pytest.mark.real_model]

GGUF = os.environ.get("FREEMEM_TEST_GGUF", "")
QUESTION = "Question: how many positive divisors does 360 have?"
TEXT = (
    QUESTION + "\n"
    "360 = 2^3 * 3^2 * 5. The number of divisors is (3+1)(2+1)(1+1).\n"
    "First attempt: (3+1)(2+1)(1+1) = 4 * 3 * 3 = 36. No wait, 1+1 is 2, so that is wrong.\n"
    + "Let me double-check the factorisation of 360 once more: 360 = 8 * 45 = 2^3 * 3^2 * 5.\n" * 6
    + "So the count is 4 * 3 * 2 = 24.\n"
    "The answer is \\boxed{24}.\n"
)


@pytest.fixture(scope="module")
def real_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    if not GGUF:
        pytest.skip("set FREEMEM_TEST_GGUF=path/to/model.gguf to run the real-model tests")
    if not Path(GGUF).is_file():
        pytest.skip(f"FREEMEM_TEST_GGUF={GGUF}: no such file")
    if not llama_cpp_available():
        pytest.skip('llama-cpp-python is not installed (pip install "llama-cpp-python[server]")')
    server = start_llama_server(GGUF, None, workdir=tmp_path_factory.mktemp("real-llama"), base_alias="real",
                                n_ctx=4096, n_threads=2, startup_timeout=300)
    try:
        yield server
    finally:
        server.stop()


def test_free_module_defaults_work_and_the_round_is_inspectable(real_server: LlamaServer) -> None:
    cleaner = FreeModuleCleaner(real_server.base_url, model=real_server.base_alias, adapter=None)
    memory = FreeMemory(cleaner, triggers=Triggers(every_tokens=None, on_loop=False))
    result = memory.clean_text(TEXT, question=QUESTION)
    event = result.event
    assert event.error is None, event.error
    assert cleaner.structured_output_in_use == {real_server.base_url: "json_object"}  # json_schema was refused
    assert event.raw is not None and event.raw.lstrip().startswith("{"), event.raw
    assert event.note is None or "protected" in event.note, event.note  # constrained JSON always parses
    assert event.usage["prompt_tokens"] > 100 and event.cleaner_latency_s > 0
    assert event.proposed >= event.applied_commands and event.proposed == event.applied_commands + len(event.rejected)
    assert all(r["detail"] for r in event.rejected), event.rejected
    assert "\\boxed{24}" in result.text and QUESTION in result.text  # what must stay, stays
    # Re-applying the same answer by hand gives the same outcome: the event describes what happened.
    from freemem.core.commands import parse_commands

    outcome = apply_commands(Context.from_text(TEXT, question=QUESTION), parse_commands(event.raw).commands)
    assert len(outcome.applied) == event.applied and outcome.text == result.text


def test_an_explicit_json_schema_is_a_config_error_at_once(real_server: LlamaServer) -> None:
    cleaner = FreeModuleCleaner(real_server.base_url, model=real_server.base_alias, adapter=None,
                                structured_output="json_schema")
    with pytest.raises(CleanerConfigError, match="json_object") as info:
        cleaner.propose(TEXT)
    assert "\n" not in str(info.value) and len(str(info.value)) < 400
    assert cleaner.breakers[real_server.base_url].state == "closed"


def test_prompted_cleaner_against_the_real_model(real_server: LlamaServer) -> None:
    langchain_openai = pytest.importorskip("langchain_openai", reason="langchain-openai is not installed")
    from freemem.cleaners.prompted import PromptedCleaner

    chat = langchain_openai.ChatOpenAI(model=real_server.base_alias, base_url=real_server.base_url, api_key="x",
                                       temperature=0, max_tokens=256, extra_body={"max_tokens": 256},
                                       max_retries=0, timeout=300)
    proposal = PromptedCleaner(chat).propose(Context.from_text(TEXT, question=QUESTION))
    assert proposal.raw  # a real model answers with text; commands when it follows the format, else a note
    assert proposal.commands or proposal.note
    outcome = apply_commands(Context.from_text(TEXT, question=QUESTION), proposal.commands)
    assert "\\boxed{24}" in outcome.text and all(r.detail for r in outcome.rejected)
