"""The Free-Module cleaner's default bound on a whole call, and FreeMemory's round deadline over real HTTP
(issue 12, item 12): a server that never answers costs one bounded, warned, skipped round."""

from __future__ import annotations

import pytest

from freemem import FreeMemory
from freemem.cleaners.free_module import DEFAULT_TOTAL_TIMEOUT, FreeModuleCleaner
from freemem.config import RoundPolicy
from freemem.core.errors import CleanerTimeout
from tests.serving.stub_openai import StubReply


def test_total_timeout_is_bounded_by_default() -> None:
    cleaner = FreeModuleCleaner("http://127.0.0.1:9/v1", model="m")
    # One full request (600 s by default: CPU serving), never timeout * (max_retries + 1) plus backoff.
    assert cleaner.total_timeout == max(DEFAULT_TOTAL_TIMEOUT, cleaner.timeout) == 600.0
    assert cleaner.total_timeout < cleaner.timeout * (cleaner.max_retries + 1)
    assert FreeMemory(cleaner, counter="approx").rounds.timeout > cleaner.total_timeout
    assert FreeModuleCleaner("http://127.0.0.1:9/v1", model="m", timeout=20.0).total_timeout == DEFAULT_TOTAL_TIMEOUT


def test_running_out_of_total_timeout_says_so(stub_server) -> None:
    stub = stub_server()
    stub.default = StubReply(status=500)
    cleaner = FreeModuleCleaner(stub.base_url, model="m", timeout=5.0, total_timeout=0.6, max_retries=50,
                                backoff_s=0.25, backoff_max_s=0.25, breaker_threshold=1000)
    with pytest.raises(CleanerTimeout, match=r"total_timeout of 0\.6 s reached"):
        cleaner.propose("ctx")
    assert 1 <= len(stub.requests) < 50


def test_round_deadline_abandons_a_server_that_never_answers(stub_server) -> None:
    stub = stub_server()
    stub.default = StubReply(delay_s=300.0)  # answers long after the test is over
    cleaner = FreeModuleCleaner(stub.base_url, model="m", timeout=60.0, max_retries=0)
    memory = FreeMemory(cleaner, counter="approx", rounds=RoundPolicy(timeout=1.0))
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
            {"role": "assistant", "content": "a " * 500}]
    with pytest.warns(RuntimeWarning, match=r"free-module exceeded 1 s"):
        result = memory.clean(msgs)
    assert result.messages == msgs and "round_timeout" in (result.event.error or "")
    assert len(stub.requests) <= 1  # max_retries=0: one request at most, and no waiting for its answer


def test_auto_total_timeout_never_cuts_one_long_request() -> None:
    assert FreeModuleCleaner("http://127.0.0.1:9/v1", model="m", timeout=300.0).total_timeout == 300.0
    assert FreeModuleCleaner("http://127.0.0.1:9/v1", model="m", total_timeout=None).total_timeout is None
