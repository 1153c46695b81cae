"""HTTP transport shared by every OpenAI-compatible client in freemem: endpoints, clients, retries, breakers.

Any HTTP cleaner (:class:`~freemem.cleaners.free_module.FreeModuleCleaner`) or model client
(:class:`~freemem.policies.reasoner.FreeReasoner`'s generation requests) builds on these pieces:

* :class:`Endpoint` -- one server's base URL (``/v1`` appended to a bare host), key and model override;
* :class:`CircuitBreaker` -- per endpoint: open after consecutive failures, half-open trial after a cooldown;
* :class:`EndpointState` -- an endpoint with its breaker and lazily created sync / per-event-loop async clients;
* :func:`is_transient` -- which errors are worth another attempt and count against an endpoint;
* :class:`Attempts` -- one call's attempt plan: round-robin start, failover, bounded retries with exponential
  backoff, breakers, a total deadline, and the error to raise once it is exhausted;
* :class:`Completion` and :data:`HANDLERS` -- the request as an I/O request for :func:`freemem.driving.drive`,
  so a client writes its request logic once as a generator and runs it sync or async.

The OpenAI SDK's own retries are off (``max_retries=0``): the plan here decides, across endpoints.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import openai

from freemem.core.errors import CleanerError, CleanerTimeout, CleanerUnavailable, ConfigError
from freemem.driving import SLEEP_HANDLERS, Sleep

__all__ = [
    "HANDLERS",
    "TRANSIENT_STATUS",
    "Attempts",
    "CircuitBreaker",
    "Completion",
    "Endpoint",
    "EndpointState",
    "Sleep",
    "acomplete",
    "complete",
    "is_timeout",
    "is_transient",
    "short_error",
]

@dataclass(frozen=True)
class Endpoint:
    """One OpenAI-compatible server. ``base_url`` without a path gets ``/v1`` appended."""

    base_url: str
    api_key: str | None = None
    #: Overrides the cleaner's ``model`` for this endpoint (servers may name the base model differently).
    model: str | None = None

    def __post_init__(self) -> None:
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"endpoint base_url must be an http(s) URL, got {self.base_url!r}")
        url = self.base_url.rstrip("/")
        if parts.path in ("", "/"):
            url += "/v1"
        object.__setattr__(self, "base_url", url)


class CircuitBreaker:
    """Stops calling an endpoint that keeps failing.

    Closed: calls go through. After ``threshold`` consecutive failures it opens for ``cooldown_s`` seconds:
    calls are refused. Then it is half-open: one trial call goes through; success closes it, failure opens it
    again for another cooldown. Thread-safe.
    """

    def __init__(self, threshold: int = 3, cooldown_s: float = 30.0, *, clock: Callable[[], float] = time.monotonic) -> None:
        if threshold < 1:
            raise ConfigError("circuit breaker threshold must be >= 1")
        if cooldown_s < 0:
            raise ConfigError("circuit breaker cooldown must be >= 0")
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_in_flight = False

    @property
    def state(self) -> Literal["closed", "open", "half_open"]:
        with self._lock:
            return self._state_locked()

    def _state_locked(self) -> Literal["closed", "open", "half_open"]:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at < self.cooldown_s:
            return "open"
        return "half_open"

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def retry_after(self) -> float:
        """Seconds until an open breaker lets a trial call through (0 when not open)."""
        with self._lock:
            if self._opened_at is None:
                return 0.0
            return max(0.0, self.cooldown_s - (self._clock() - self._opened_at))

    def allow(self) -> bool:
        """Whether a call may go out now. In half-open state only one trial call is let through at a time."""
        with self._lock:
            state = self._state_locked()
            if state == "closed":
                return True
            if state == "open" or self._trial_in_flight:
                return False
            self._trial_in_flight = True
            return True

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._trial_in_flight = False

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._trial_in_flight or self._failures >= self.threshold:
                self._opened_at = self._clock()
            self._trial_in_flight = False

    def release(self) -> None:
        """Give back a call that :meth:`allow` let through but that was never made (no outcome to record)."""
        with self._lock:
            self._trial_in_flight = False

    def reset(self) -> None:
        """Close the breaker and forget past failures."""
        self.record_success()


class EndpointState:
    """An endpoint with its breaker and lazily created clients."""

    def __init__(self, endpoint: Endpoint, breaker: CircuitBreaker, structured: str = "json_schema") -> None:
        self.endpoint = endpoint
        self.breaker = breaker
        #: The structured-output form sent to this endpoint (``auto`` starts at ``json_schema`` and moves on
        #: when the server refuses a form).
        self.structured = structured
        self._sync: openai.OpenAI | None = None
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, openai.AsyncOpenAI] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    def _kwargs(self, default_key: str, timeout: float) -> dict[str, Any]:
        # Never fall back to OPENAI_API_KEY from the environment: it must not leak to a local model server.
        return {"base_url": self.endpoint.base_url, "api_key": self.endpoint.api_key or default_key,
                "max_retries": 0, "timeout": timeout}

    def sync_client(self, default_key: str, timeout: float) -> openai.OpenAI:
        with self._lock:
            if self._sync is None:
                self._sync = openai.OpenAI(**self._kwargs(default_key, timeout))
            return self._sync

    def async_client(self, default_key: str, timeout: float) -> openai.AsyncOpenAI:
        # An async HTTP pool belongs to the event loop it was created on: keep one per loop.
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._async.get(loop)
            if client is None:
                client = openai.AsyncOpenAI(**self._kwargs(default_key, timeout))
                self._async[loop] = client
            return client

    def close(self) -> None:
        with self._lock:
            if self._sync is not None:
                self._sync.close()
                self._sync = None

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._async.pop(loop, None)
        if client is not None:
            await client.close()


#: HTTP statuses worth another attempt (possibly on another endpoint); they count against an endpoint's breaker.
TRANSIENT_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is worth another attempt and counts against the endpoint: no connection, a timeout,
    or one of :data:`TRANSIENT_STATUS` / any 5xx answer."""
    if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in TRANSIENT_STATUS or exc.status_code >= 500
    return False


def is_timeout(exc: BaseException) -> bool:
    """Whether ``exc`` is a request that timed out (the server is most likely still computing it)."""
    return isinstance(exc, (openai.APITimeoutError, TimeoutError))


def short_error(exc: BaseException, limit: int = 200) -> str:
    """``exc`` as one line of at most ``limit`` characters."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Attempts:
    """One call's attempt plan: round-robin start, failover, bounded retries with backoff, breakers.

    Args:
        states: the endpoints, in order; the plan starts at ``start`` (modulo) and goes round.
        start: where this call starts (a counter shared by calls spreads them round robin).
        max_retries: further attempts after the first, over all endpoints.
        timeout: seconds per request.
        total_timeout: bound on the whole call, backoff included (None: none); a request gets what is left.
        backoff_s, backoff_max_s: before re-trying an endpoint already tried in this call, wait
            ``min(backoff_max_s, backoff_s * 2 ** (tries - 1))``.
        name: who is calling, for the error messages.
        use_breakers: consult and feed each endpoint's breaker (off: a client with one server and its own
            stopping rule, like a reasoning run).
        skip_timed_out: do not re-send to an endpoint whose request timed out in this call (it is most likely
            still computing it, and a retry would queue behind it).

    Shared by the sync and async shells, which only differ in how they sleep and send (see :data:`HANDLERS`).
    """

    def __init__(self, states: Sequence[EndpointState], *, start: int = 0, max_retries: int, timeout: float,
                 total_timeout: float | None = None, backoff_s: float = 0.5, backoff_max_s: float = float("inf"),
                 name: str = "client", use_breakers: bool = True, skip_timed_out: bool = True) -> None:
        if not states:
            raise ConfigError("an attempt plan needs at least one endpoint")
        start %= len(states)
        self._order = list(states[start:]) + list(states[:start])
        self._budget = max_retries + 1
        self._tried: dict[int, int] = {}
        self._cursor = 0
        self.timeout = timeout
        self.total_timeout = total_timeout
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.name = name
        self.use_breakers = use_breakers
        self.skip_timed_out = skip_timed_out
        self.attempts = 0
        self.errors: list[tuple[str, BaseException]] = []
        self._deadline = (time.monotonic() + total_timeout) if total_timeout else None
        self.out_of_time = False
        # Endpoints whose request timed out in this call: most likely still computing it, so not asked again.
        self._busy: set[int] = set()

    def backoff(self, previous_tries: int) -> float:
        """The wait before the next try of an endpoint already tried ``previous_tries`` times (>= 1)."""
        return min(self.backoff_max_s, self.backoff_s * 2.0 ** (previous_tries - 1))

    def next(self) -> tuple[EndpointState, float, float] | None:
        """The next endpoint, the delay to wait before calling it, and the request timeout; None when done."""
        if self.attempts >= self._budget:
            return None
        n = len(self._order)
        for _ in range(n):
            state = self._order[self._cursor % n]
            self._cursor += 1
            if id(state) in self._busy or (self.use_breakers and not state.breaker.allow()):
                continue
            previous = self._tried.get(id(state), 0)
            delay = self.backoff(previous) if previous else 0.0
            timeout = self.timeout
            if self._deadline is not None:
                remaining = self._deadline - time.monotonic() - delay
                if remaining <= 0:
                    self.release(state)
                    self.out_of_time = True
                    return None
                timeout = min(timeout, remaining)
            self._tried[id(state)] = previous + 1
            self.attempts += 1
            return state, delay, timeout
        return None

    def failed(self, state: EndpointState, exc: BaseException) -> None:
        """A transient failure of ``state``: recorded against its breaker; the plan moves on."""
        if self.use_breakers:
            state.breaker.record_failure()
        self.errors.append((state.endpoint.base_url, exc))
        if self.skip_timed_out and is_timeout(exc):
            self._busy.add(id(state))

    def succeeded(self, state: EndpointState) -> None:
        """``state`` answered (or is up but refused the request): its breaker closes."""
        if self.use_breakers:
            state.breaker.record_success()

    def release(self, state: EndpointState) -> None:
        """A call :meth:`next` let through was never made or ended without a verdict (cancelled, a bug)."""
        if self.use_breakers:
            state.breaker.release()

    def error(self) -> CleanerError:
        """The exception to raise once the plan is exhausted."""
        if not self.errors:
            waits = [s.breaker.retry_after() for s in self._order]
            return CleanerUnavailable(
                f"{self.name}: circuit open for every endpoint "
                f"({len(self._order)}); next trial in {min(waits):.1f}s"
            )
        detail = "; ".join(f"{url}: {type(e).__name__}: {short_error(e)}" for url, e in self.errors[-3:])
        msg = f"{self.name}: no answer after {self.attempts} attempt(s): {detail}"
        timeouts = all(is_timeout(e) for _, e in self.errors)
        if timeouts:
            msg += (f" (timeout={self.timeout:g} s per request; a slow server, e.g. a model on CPUs, "
                    "needs a larger timeout)")
        if self.out_of_time:
            msg += f" (total_timeout of {self.total_timeout:g} s reached)"
            return CleanerTimeout(msg)
        if timeouts:
            return CleanerTimeout(msg)
        return CleanerUnavailable(msg)


@dataclass(frozen=True)
class Completion:
    """An I/O request: send ``kwargs`` to ``state``'s server (``chat.completions.create`` for ``api="chat"``,
    ``completions.create`` otherwise) within ``timeout`` seconds; the answer is the SDK's response object and a
    failure the SDK's :class:`openai.OpenAIError`. The client is created on first use with ``api_key`` and
    ``client_timeout`` (default: ``timeout``)."""

    state: EndpointState
    api: Literal["chat", "completions"]
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    timeout: float = 600.0
    api_key: str = "EMPTY"
    client_timeout: float | None = None


def complete(request: Completion) -> Any:
    """Send a :class:`Completion` with the endpoint's sync client."""
    client = request.state.sync_client(request.api_key, request.client_timeout or request.timeout)
    api = client.chat.completions if request.api == "chat" else client.completions
    return api.create(**request.kwargs, timeout=request.timeout)


async def acomplete(request: Completion) -> Any:
    """Send a :class:`Completion` with the endpoint's async client (one per event loop)."""
    client = request.state.async_client(request.api_key, request.client_timeout or request.timeout)
    api = client.chat.completions if request.api == "chat" else client.completions
    return await api.create(**request.kwargs, timeout=request.timeout)


#: Handlers of :class:`Completion` and :class:`~freemem.driving.Sleep` requests, by mode, for
#: :func:`freemem.driving.drive` (``"sync"``) and :func:`~freemem.driving.adrive` (``"async"``).
HANDLERS: dict[str, dict[type, Callable[[Any], Any]]] = {
    "sync": {Completion: complete, **SLEEP_HANDLERS["sync"]},
    "async": {Completion: acomplete, **SLEEP_HANDLERS["async"]},
}
