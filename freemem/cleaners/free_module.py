"""The Free-Module cleaner: a LoRA adapter (or any model) behind an OpenAI-compatible endpoint.

SGLang is the first target (``--enable-lora --lora-paths free=<adapter>``; the adapter is chosen per request),
vLLM (``--enable-lora --lora-modules free=<adapter>``) and llama.cpp servers work the same way. The cleaner
renders a versioned prompt template around the context, asks for JSON commands (schema-constrained when the
server supports it), and parses the answer with :func:`freemem.core.commands.parse_commands`.

Works by default against every server: ``structured_output="auto"`` (the default) sends OpenAI's
``json_schema`` form (SGLang, vLLM, llama.cpp's llama-server) and, when a server refuses that form as invalid
(llama-cpp-python's ``python -m llama_cpp.server`` answers HTTP 500 "Input should be 'text' or 'json_object'"),
switches that endpoint to ``{"type": "json_object", "schema": ...}`` and then to free text, remembering the
form per endpoint (:attr:`FreeModuleCleaner.structured_output_in_use`).

Failure semantics: an answer that holds no usable commands is *not* an error — it gives a :class:`Proposal`
with no commands and ``note`` saying why. A request the server refuses as invalid (a validation answer, see
:mod:`freemem.cleaners.refusals`) raises :class:`~freemem.core.errors.CleanerConfigError` at once: one line, with a
hint, never retried, no mark against the endpoint. A server that cannot be reached, times out or keeps failing
raises a :class:`~freemem.core.errors.CleanerError` subclass after bounded retries across the configured endpoints
(a request that timed out is not re-sent to the same endpoint: the server is most likely still computing it,
and a retry would queue behind it); a per-endpoint circuit breaker makes later calls fail at once
(:class:`~freemem.core.errors.CleanerUnavailable`) while every endpoint is known to be down. Skipping the round is
the caller's job (fail open).

Timeouts fit CPU serving by default: a 1.5B model on 2 CPU cores takes minutes per call on a few thousand
tokens of context, and a client that gives up early leaves the server computing the abandoned request. See
:data:`DEFAULT_TIMEOUT`; ``RoundPolicy(timeout=...)`` is the per-round net above the cleaner.
"""

from __future__ import annotations

import copy
import itertools
import logging
import time
from collections.abc import Generator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from freemem.optional import require_extra

require_extra("serve", "openai", what="FreeModuleCleaner")

import openai

from freemem.cleaners.http import (
    HANDLERS,
    Attempts,
    CircuitBreaker,
    Completion,
    Endpoint,
    EndpointState,
    Sleep,
    is_transient,
    short_error,
)
from freemem.cleaners.refusals import refusal_of
from freemem.core.apply import REPEATED_MODES, RepeatedMode
from freemem.core.cleaner import Cleaner, Proposal
from freemem.core.commands import COMMANDS_JSON_SCHEMA, parse_commands
from freemem.core.errors import CleanerConfigError, CleanerError, ConfigError
from freemem.core.rendering import RenderedContext, RenderOptions, prompt_text
from freemem.driving import adrive, drive
from freemem.prompts import PromptTemplate, load_template

if TYPE_CHECKING:
    from freemem.core.context import Context

__all__ = [
    "AdapterMode",
    "DEFAULT_TIMEOUT",
    "DEFAULT_TOTAL_TIMEOUT",
    "FreeModuleCleaner",
    "StructuredOutput",
    "commands_schema",
]

#: How the adapter is named in a request.
#: ``model_suffix``: ``model="<base>:<adapter>"`` (SGLang's OpenAI API; ``freemem serve --backend llamacpp`` aliases);
#: ``lora_path``: ``model="<base>"`` plus ``"lora_path": "<adapter>"`` in the body (SGLang);
#: ``model``: ``model="<adapter>"`` (vLLM serves each LoRA module under its own name);
#: ``none``: ``model="<base>"`` only (a merged model, or no adapter at all).
AdapterMode = Literal["model_suffix", "lora_path", "model", "none"]

#: How output is constrained. ``auto`` (the default): ``json_schema`` first, and per endpoint the next form
#: below when the server refuses one as invalid; ``json_schema``: OpenAI's ``{"type": "json_schema", ...}``
#: (SGLang, vLLM, llama.cpp's own llama-server); ``json_object``: ``{"type": "json_object", "schema": ...}``
#: (llama-cpp-python's server, which rejects ``json_schema``); ``none``: free text, parsed forgivingly.
StructuredOutput = Literal["auto", "json_schema", "json_object", "none"]

Api = Literal["chat", "completions"]

_ADAPTER_MODES = ("model_suffix", "lora_path", "model", "none")
_STRUCTURED = ("auto", "json_schema", "json_object", "none")
#: ``structured_output="auto"``: the form tried after one an endpoint refused.
_FALLBACK: dict[str, str] = {"json_schema": "json_object", "json_object": "none"}

logger = logging.getLogger("freemem")


def commands_schema(
    *, max_commands: int | None = None, min_commands: int = 0, max_anchor_chars: int | None = None
) -> dict[str, Any]:
    """:data:`~freemem.core.commands.COMMANDS_JSON_SCHEMA`, optionally bounded.

    Bounds keep grammar-constrained output finite: a weak model can otherwise fill ``max_tokens`` with one
    endless anchor and leave truncated JSON.
    """
    schema = copy.deepcopy(COMMANDS_JSON_SCHEMA)
    commands = schema["properties"]["commands"]
    if min_commands:
        commands["minItems"] = min_commands
    if max_commands is not None:
        commands["maxItems"] = max_commands
    if max_anchor_chars is not None:
        for prop in commands["items"]["properties"].values():
            prop["maxLength"] = max_anchor_chars
    return schema


def _fatal(cleaner_name: str, state: EndpointState, exc: openai.OpenAIError) -> CleanerError:
    refusal = refusal_of(exc)
    if refusal is not None:
        what = (f"response_format {state.structured}" if refusal.kind == "response_format" else "the request")
        return CleanerConfigError(refusal.describe(cleaner_name, state.endpoint.base_url, what))
    if isinstance(exc, openai.APIStatusError):
        body = exc.body if exc.body is not None else exc.message
        return CleanerError(f"{cleaner_name}: {state.endpoint.base_url} refused the request "
                            f"(HTTP {exc.status_code}): {short_error(Exception(body))}")
    return CleanerError(f"{cleaner_name}: unusable answer from {state.endpoint.base_url}: {short_error(exc)}")


DEFAULT_TIMEOUT = 600.0
"""Seconds one request may take by default. Chosen for CPU serving: Qwen2.5-Coder-1.5B (Q4_K_M) behind
llama-cpp-python on 2 cores takes 90-320 s per cleaning call on a few thousand tokens of context, and close to
300 s for 2,400 prompt tokens on 2 shared, busy cores (prefill dominates: 7-15 tokens/s); a client that gives up
early does not stop the server: it keeps computing the abandoned request and the next one waits behind it. GPU
servers answer in seconds; lower it there to notice a hung server sooner."""

DEFAULT_TOTAL_TIMEOUT = 90.0
"""Seconds a whole :meth:`FreeModuleCleaner.propose` call may take at least (``total_timeout="auto"``: this,
or one request's ``timeout`` when that is longer), retries and backoff included."""


class FreeModuleCleaner(Cleaner):
    """Ask a served Free-Module (LoRA adapter) for deletion commands over an OpenAI-compatible API.

    >>> cleaner = FreeModuleCleaner("http://127.0.0.1:30000", model="Qwen/Qwen3-8B", adapter="free")
    >>> cleaner.request_for("...")["model"]  # SGLang's per-request adapter naming
    'Qwen/Qwen3-8B:free'

    No adapter (a plain instruction model): ``adapter=None``. vLLM: ``adapter_mode="model"``. The
    structured-output form each server accepts is detected (``structured_output="auto"``).

    Args:
        endpoints: one base URL, an :class:`Endpoint`, or several (calls are spread round robin; a failing
            endpoint is skipped and the next one tried).
        model: the served base model's name (SGLang: the ``--model-path`` or ``--served-model-name``).
        adapter: the adapter's served name (``free`` in ``--lora-paths free=...``); ``None`` for no adapter.
        adapter_mode: how the adapter is named in the request, see :data:`AdapterMode`.
        template: a :class:`~freemem.prompts.PromptTemplate`, a built-in name or a template file path. The
            default ``free_module_v3`` shows protected parts tagged and a passage repeated verbatim once, inside
            ``<repeated times="N">`` tags, and explains both; ``free_module_v2`` (no collapsing) and
            ``free_module_v1`` (the context's own text) stay available, and a released adapter's training
            format can be matched with your own file.
        render: how the context is shown to the model (:mod:`freemem.core.rendering`): ``"auto"`` (what the
            template declares), ``"raw"`` (the context's own text), ``"mark"``, ``"elide"`` or
            :class:`~freemem.core.rendering.RenderOptions`. Anchors are located in what the model was shown.
        repeated: what a prefix that occurs more than once means when the commands are applied
            (:data:`~freemem.core.apply.RepeatedMode`): ``"all"`` (the default, as the Free()LM paper's
            substitution of ``prefix.*?suffix`` and its adapters' training: every match is removed),
            ``"first"``, or ``"reject"`` (freemem's stricter rule before v2: the prefix must occur once).
        structured_output: how output is constrained, see :data:`StructuredOutput` (``auto``: detected per
            endpoint, see :attr:`structured_output_in_use`).
        json_schema: the schema for constrained output (default :data:`~freemem.core.commands.COMMANDS_JSON_SCHEMA`;
            :func:`commands_schema` builds bounded variants).
        api: ``chat`` (chat template applied by the server) or ``completions`` (the template rendered as one
            raw prompt: for adapters trained on raw prompt/completion pairs).
        temperature, max_tokens, seed, stop: sampling settings.
        timeout: seconds per request (default :data:`DEFAULT_TIMEOUT`, 600 s: fits CPU serving).
        total_timeout: bound on a whole call -- every attempt, failover and backoff included. The default,
            ``"auto"``, is ``max(90 s, timeout)``: one full request, retries in what is left, never less than one
            request (600 s with the default ``timeout``). ``None`` removes it, and then a call may last
            ``timeout * (max_retries + 1)`` plus backoff. ``RoundPolicy(timeout=660)`` (its default) is the
            net above it for any cleaner: raise both for a model whose answers take longer still.
        max_retries: further attempts after the first (on the next endpoints, then again with backoff). A
            request that timed out is not re-sent to the same endpoint in the same call, and a refused
            (invalid) request is never retried.
        backoff_s, backoff_max_s: exponential backoff before re-trying an endpoint already tried in this call.
        breaker_threshold, breaker_cooldown_s: per endpoint, open the circuit after that many consecutive
            failures, for that many seconds.
        extra_body: extra JSON fields sent with every request (e.g. ``{"chat_template_kwargs":
            {"enable_thinking": False}}`` for Qwen3 on SGLang/vLLM).
        api_key: default key for endpoints without their own (local servers ignore it).
    """

    name = "free-module"

    def __init__(
        self,
        endpoints: str | Endpoint | Sequence[str | Endpoint],
        *,
        model: str,
        adapter: str | None = "free",
        adapter_mode: AdapterMode = "model_suffix",
        template: PromptTemplate | str | Path = "free_module_v3",
        render: RenderOptions | Literal["auto", "raw", "mark", "elide"] = "auto",
        repeated: RepeatedMode = "all",
        structured_output: StructuredOutput = "auto",
        json_schema: Mapping[str, Any] | None = None,
        api: Api = "chat",
        temperature: float = 0.0,
        max_tokens: int = 1024,
        seed: int | None = None,
        stop: Sequence[str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        total_timeout: float | Literal["auto"] | None = "auto",
        max_retries: int = 2,
        backoff_s: float = 0.5,
        backoff_max_s: float = 8.0,
        breaker_threshold: int = 3,
        breaker_cooldown_s: float = 30.0,
        extra_body: Mapping[str, Any] | None = None,
        api_key: str = "EMPTY",
        name: str | None = None,
    ) -> None:
        if isinstance(endpoints, (str, Endpoint)):
            endpoints = [endpoints]
        eps = [e if isinstance(e, Endpoint) else Endpoint(e) for e in endpoints]
        if not eps:
            raise ConfigError("FreeModuleCleaner needs at least one endpoint")
        if adapter_mode not in _ADAPTER_MODES:
            raise ConfigError(f"adapter_mode must be one of {_ADAPTER_MODES}, got {adapter_mode!r}")
        if structured_output not in _STRUCTURED:
            raise ConfigError(f"structured_output must be one of {_STRUCTURED}, got {structured_output!r}")
        if api not in ("chat", "completions"):
            raise ConfigError(f"api must be 'chat' or 'completions', got {api!r}")
        if adapter_mode in ("model_suffix", "lora_path", "model") and not adapter:
            adapter_mode = "none"
        if max_tokens < 1 or timeout <= 0 or max_retries < 0 or backoff_s < 0 or backoff_max_s < 0:
            raise ConfigError("max_tokens >= 1, timeout > 0, max_retries >= 0 and backoffs >= 0 are required")
        if total_timeout == "auto":
            total_timeout = max(DEFAULT_TOTAL_TIMEOUT, timeout)
        if total_timeout is not None and (isinstance(total_timeout, str) or not total_timeout > 0):
            raise ConfigError(f"total_timeout must be > 0, 'auto' or None, got {total_timeout!r}")
        self.endpoints: tuple[Endpoint, ...] = tuple(eps)
        self.model = model
        self.adapter = adapter
        self.adapter_mode: AdapterMode = adapter_mode
        self.template = load_template(template)
        #: How contexts are rendered for the model (None: their own text).
        self.render: RenderOptions | None = RenderOptions.of(render, auto=self.template.render_mode,
                                                              collapse_repeats=self.template.collapse_repeats)
        if repeated not in REPEATED_MODES:
            raise ConfigError(f"repeated must be one of {REPEATED_MODES}, got {repeated!r}")
        self.repeated: RepeatedMode = repeated
        self.structured_output: StructuredOutput = structured_output
        self.json_schema: dict[str, Any] = dict(json_schema) if json_schema is not None else COMMANDS_JSON_SCHEMA
        self.api: Api = api
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.seed = seed
        self.stop = list(stop) if stop else None
        self.timeout = timeout
        self.total_timeout = total_timeout
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.extra_body: dict[str, Any] = dict(extra_body or {})
        self.api_key = api_key
        if name:
            self.name = name
        first = "json_schema" if structured_output == "auto" else structured_output
        self._states = [EndpointState(e, CircuitBreaker(breaker_threshold, breaker_cooldown_s), first)
                        for e in eps]
        self._rr = itertools.count()

    # -- request building and answer parsing (pure; shared by sync and async) ----------------------------

    @property
    def breakers(self) -> dict[str, CircuitBreaker]:
        """Each endpoint's circuit breaker, by base URL."""
        return {s.endpoint.base_url: s.breaker for s in self._states}

    @property
    def structured_output_in_use(self) -> dict[str, str]:
        """The structured-output form sent to each endpoint, by base URL (with ``auto``: what was detected so
        far; ``json_schema`` until a server refuses it)."""
        return {s.endpoint.base_url: s.structured for s in self._states}

    def _attempts(self) -> Attempts:
        """This call's attempt plan (round robin over the endpoints, retries, backoff, breakers)."""
        return Attempts(self._states, start=next(self._rr), max_retries=self.max_retries, timeout=self.timeout,
                        total_timeout=self.total_timeout, backoff_s=self.backoff_s,
                        backoff_max_s=self.backoff_max_s, name=self.name)

    def request_for(self, text: str, endpoint: Endpoint | None = None, *,
                    structured_output: str | None = None) -> dict[str, Any]:
        """The keyword arguments sent to ``chat.completions.create`` (or ``completions.create``) for ``text``.

        ``structured_output`` overrides the form; by default it is the one in use for ``endpoint`` (the first
        endpoint when none is given)."""
        if structured_output is None:
            state = next((s for s in self._states if endpoint is None or s.endpoint == endpoint), self._states[0])
            structured_output = state.structured
        if structured_output not in _STRUCTURED or structured_output == "auto":
            raise ConfigError(f"structured_output must be one of {_STRUCTURED[1:]} here, got {structured_output!r}")
        model = (endpoint.model if endpoint and endpoint.model else None) or self.model
        body = dict(self.extra_body)
        if self.adapter_mode == "model_suffix":
            model = f"{model}:{self.adapter}"
        elif self.adapter_mode == "lora_path":
            body["lora_path"] = self.adapter
        elif self.adapter_mode == "model":
            model = str(self.adapter)
        kwargs: dict[str, Any] = {"model": model, "temperature": self.temperature, "max_tokens": self.max_tokens}
        if self.api == "chat":
            kwargs["messages"] = self.template.render(text)
        else:
            kwargs["prompt"] = self.template.render_prompt(text)
        if self.seed is not None:
            kwargs["seed"] = self.seed
        if self.stop:
            kwargs["stop"] = self.stop
        response_format: dict[str, Any] | None = None
        if structured_output == "json_schema":
            response_format = {"type": "json_schema",
                               "json_schema": {"name": "commands", "schema": self.json_schema, "strict": True}}
        elif structured_output == "json_object":
            response_format = {"type": "json_object", "schema": self.json_schema}
        if response_format is not None:
            if self.api == "chat":
                kwargs["response_format"] = response_format
            else:  # the completions signature has no response_format; servers that support it read the body
                body["response_format"] = response_format
        if body:
            kwargs["extra_body"] = body
        return kwargs

    def prompt_text(self, context: Context | str) -> tuple[str, RenderedContext | None]:
        """The text put in the prompt for ``context`` (rendered as :attr:`render` says) and its rendering."""
        return prompt_text(context, self.render)

    def _proposal(self, response: Any, request: dict[str, Any], state: EndpointState, plan: Attempts,
                  started: float, request_s: float, shown: RenderedContext | None = None) -> Proposal:
        choices = getattr(response, "choices", None) or []
        raw: str | None = None
        finish_reason: str | None = None
        if choices:
            choice = choices[0]
            finish_reason = getattr(choice, "finish_reason", None)
            if self.api == "chat":
                message = getattr(choice, "message", None)
                raw = getattr(message, "content", None) if message is not None else None
            else:
                raw = getattr(choice, "text", None)
        usage: dict[str, int] = {}
        u = getattr(response, "usage", None)
        if u is not None:
            for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
                value = getattr(u, key, None)
                if isinstance(value, int):
                    usage[key] = value
        parsed = parse_commands(raw)
        note = None
        if not choices:
            note = "the server returned no choices"
        elif parsed.error:
            note = parsed.error
            if finish_reason == "length":
                note += f" (output cut at max_tokens={self.max_tokens})"
        return Proposal(
            commands=parsed.commands,
            cleaner=self.name,
            latency_s=time.perf_counter() - started,
            usage=usage,
            raw=raw,
            note=note,
            shown=shown,
            extra={
                "endpoint": state.endpoint.base_url,
                "model": request["model"],
                "adapter": self.adapter if self.adapter_mode != "none" else None,
                "template": self.template.version,
                "render": self.render.protected if self.render is not None else "raw",
                "finish_reason": finish_reason,
                "attempts": plan.attempts,
                "structured_output": state.structured,
                "request_s": request_s,
                "skipped": parsed.skipped,
            },
        )

    def _failed(self, state: EndpointState, plan: Attempts, exc: openai.OpenAIError) -> bool:
        """A request to ``state`` raised ``exc``. True: send it to the same endpoint again at once (it refused
        the structured-output form and ``auto`` moved on to the next); False: a transient failure, recorded
        (the plan moves on). Raises :class:`CleanerConfigError` (a refusal) or :class:`CleanerError`."""
        if is_transient(exc) and refusal_of(exc) is None:
            plan.failed(state, exc)
            return False
        plan.succeeded(state)  # the server is up; the request is what is wrong
        refusal = refusal_of(exc)
        if (refusal is not None and refusal.kind == "response_format" and self.structured_output == "auto"
                and state.structured in _FALLBACK):
            before, state.structured = state.structured, _FALLBACK[state.structured]
            logger.info("%s: %s refused response_format %s (%s); using %s from now on", self.name,
                        state.endpoint.base_url, before, refusal.message, state.structured)
            return True
        raise _fatal(self.name, state, exc) from exc

    # -- the request logic, once: steps yielding Sleep / Completion requests; sync and async drive them ----

    def _propose_steps(self, context: Context | str) -> Generator[Sleep | Completion, Any, Proposal]:
        started = time.perf_counter()
        text, shown = self.prompt_text(context)
        plan = self._attempts()
        while (step := plan.next()) is not None:
            state, delay, timeout = step
            if delay:
                try:
                    yield Sleep(delay)
                except BaseException:
                    plan.release(state)  # cancelled while backing off: the call was never made
                    raise
            while True:  # again at once only when the endpoint refused the structured-output form ("auto")
                request = self.request_for(text, state.endpoint, structured_output=state.structured)
                t0 = time.perf_counter()
                try:
                    response = yield Completion(state, self.api, request, timeout, self.api_key, self.timeout)
                except openai.OpenAIError as exc:
                    if self._failed(state, plan, exc):
                        continue
                    break
                except BaseException:
                    plan.release(state)  # cancelled or a bug: no verdict on the endpoint
                    raise
                plan.succeeded(state)
                return self._proposal(response, request, state, plan, started, time.perf_counter() - t0, shown)
        raise plan.error()

    def propose(self, context: Context | str) -> Proposal:
        """Ask the Free-Module for commands. Raises :class:`CleanerError` subclasses when no server answers."""
        return drive(self._propose_steps(context), HANDLERS["sync"])

    async def apropose(self, context: Context | str) -> Proposal:
        """Async twin of :meth:`propose`."""
        return await adrive(self._propose_steps(context), HANDLERS["async"])

    def close(self) -> None:
        """Close the sync HTTP clients (async ones: :meth:`aclose`, on their loop)."""
        for state in self._states:
            state.close()

    async def aclose(self) -> None:
        """Close the async HTTP clients created on the running event loop."""
        for state in self._states:
            await state.aclose()

    def __enter__(self) -> FreeModuleCleaner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> FreeModuleCleaner:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
        self.close()

    def __repr__(self) -> str:
        urls = ", ".join(e.base_url for e in self.endpoints)
        return (f"FreeModuleCleaner(endpoints=[{urls}], model={self.model!r}, adapter={self.adapter!r}, "
                f"adapter_mode={self.adapter_mode!r}, structured_output={self.structured_output!r}, "
                f"template={self.template.version!r}, repeated={self.repeated!r})")
