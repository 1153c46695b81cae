"""PromptedCleaner: the cleaner protocol through in-context instructions to any LangChain chat model.

No adapter and no special server: the prompt (a versioned :class:`~freemem.prompts.PromptTemplate`, by default
``prompted_v3``) tells a general model what to delete and how to answer; the answer is parsed with the same
forgiving :func:`~freemem.core.commands.parse_commands` as the Free-Module's. The Free()LM paper found such prompting
weaker than the trained adapter (it tends to cut anchors the reasoning still needs), which is why
:func:`freemem.apply_commands` checks every command anyway.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from freemem.cleaners.refusals import refusal_of
from freemem.core.apply import REPEATED_MODES, RepeatedMode
from freemem.core.cleaner import Cleaner, Proposal
from freemem.core.commands import parse_commands
from freemem.core.errors import CleanerConfigError, CleanerError, CleanerTimeout, ConfigError
from freemem.core.rendering import RenderedContext, RenderOptions, prompt_text
from freemem.messages import answer_text, model_usage
from freemem.prompts import PromptTemplate, load_template

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import BaseMessage

    from freemem.core.context import Context

__all__ = ["PromptedCleaner"]






class PromptedCleaner(Cleaner):
    """Ask a LangChain chat model, by instructions alone, for deletion commands.

    Args:
        model: any ``BaseChatModel`` (``ChatOpenAI``, ``ChatAnthropic``, a local model...). Its own settings
            (temperature, max tokens, retries, timeout) apply; pass a configured instance.
        template: a :class:`~freemem.prompts.PromptTemplate`, a built-in name or a template file path
            (default ``prompted_v3``: protected parts tagged, verbatim repeats shown once; ``prompted_v2`` and
            ``prompted_v1`` stay available).
        render: how the context is shown to the model (:mod:`freemem.core.rendering`): ``"auto"`` (what the
            template declares), ``"raw"``, ``"mark"``, ``"elide"`` or :class:`~freemem.core.rendering.RenderOptions`.
        repeated: what a repeated prefix means when the commands are applied: ``"all"`` (every match is
            removed, the Free()LM semantics; the default), ``"first"`` or ``"reject"``.
        timeout: seconds :meth:`apropose` waits before raising :class:`~freemem.core.errors.CleanerTimeout`. The sync
            :meth:`propose` cannot interrupt a blocking call: give the model its own timeout for that path.
        invoke_kwargs: extra keyword arguments for ``invoke``/``ainvoke`` (e.g. ``{"config": {...}}``).
        name: the name recorded in ledger events (default ``"prompted"``).

    Any exception from the model becomes a :class:`~freemem.core.errors.CleanerError` (timeouts a
    :class:`~freemem.core.errors.CleanerTimeout`; a request the model's server refuses as invalid -- an HTTP
    validation answer, see :mod:`freemem.cleaners.refusals` -- a one-line
    :class:`~freemem.core.errors.CleanerConfigError` with a hint); an answer without usable commands gives a
    :class:`Proposal` with no commands and a ``note``.

    For a local OpenAI-compatible server on CPUs, give the chat model a timeout that fits (minutes: see
    :data:`freemem.cleaners.free_module.DEFAULT_TIMEOUT`) and ``max_retries=0`` (a retried request waits
    behind the abandoned one, which the server keeps computing).
    """

    name = "prompted"

    def __init__(
        self,
        model: BaseChatModel,
        *,
        template: PromptTemplate | str | Path = "prompted_v3",
        render: RenderOptions | Literal["auto", "raw", "mark", "elide"] = "auto",
        repeated: RepeatedMode = "all",
        timeout: float | None = None,
        invoke_kwargs: Mapping[str, Any] | None = None,
        name: str | None = None,
    ) -> None:
        if not (hasattr(model, "invoke") and hasattr(model, "ainvoke")):
            raise ConfigError("PromptedCleaner needs a LangChain chat model (with invoke and ainvoke)")
        if timeout is not None and timeout <= 0:
            raise ConfigError("timeout must be > 0")
        self.model = model
        self.template = load_template(template)
        #: How contexts are rendered for the model (None: their own text).
        self.render: RenderOptions | None = RenderOptions.of(render, auto=self.template.render_mode,
                                                              collapse_repeats=self.template.collapse_repeats)
        if repeated not in REPEATED_MODES:
            raise ConfigError(f"repeated must be one of {REPEATED_MODES}, got {repeated!r}")
        self.repeated: RepeatedMode = repeated
        self.timeout = timeout
        self.invoke_kwargs: dict[str, Any] = dict(invoke_kwargs or {})
        if name:
            self.name = name

    def messages_for(self, text: str) -> list[BaseMessage]:
        """The LangChain messages sent for ``text``."""
        from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

        kinds = {"system": SystemMessage, "assistant": AIMessage}  # the template's worked examples answer
        return [kinds.get(m["role"], HumanMessage)(content=m["content"]) for m in self.template.render(text)]

    def prompt_text(self, context: Context | str) -> tuple[str, RenderedContext | None]:
        """The text put in the prompt for ``context`` (rendered as :attr:`render` says) and its rendering."""
        return prompt_text(context, self.render)

    def _proposal(self, answer: Any, started: float, shown: RenderedContext | None = None) -> Proposal:
        raw = answer_text(answer, reasoning=False)
        parsed = parse_commands(raw)
        return Proposal(
            commands=parsed.commands,
            cleaner=self.name,
            latency_s=time.perf_counter() - started,
            usage=model_usage(answer),
            raw=raw,
            note=parsed.error,
            shown=shown,
            extra={"template": self.template.version, "skipped": parsed.skipped,
                   "render": self.render.protected if self.render is not None else "raw",
                   "model": getattr(self.model, "model_name", None) or getattr(self.model, "model", None)
                   or type(self.model).__name__},
        )

    def _error(self, exc: BaseException) -> CleanerError:
        if isinstance(exc, CleanerError):
            return exc
        refusal = refusal_of(exc)
        if refusal is not None:
            if refusal.kind == "response_format":
                refusal = dataclasses.replace(refusal, hint=(
                    "the server does not accept the response_format bound to the chat model: bind one it accepts "
                    "(llama-cpp-python's server: {'type': 'json_object', 'schema': ...}) or none"))
            return CleanerConfigError(refusal.describe(self.name, "the chat model's server"))
        if isinstance(exc, (TimeoutError, asyncio.TimeoutError)) or "timeout" in type(exc).__name__.lower():
            return CleanerTimeout(f"{self.name}: the chat model timed out: {exc}")
        text = " ".join(str(exc).split())
        text = text if len(text) <= 300 else text[:297] + "..."
        return CleanerError(f"{self.name}: the chat model failed: {type(exc).__name__}: {text}")

    def propose(self, context: Context | str) -> Proposal:
        started = time.perf_counter()
        text, shown = self.prompt_text(context)
        try:
            answer = self.model.invoke(self.messages_for(text), **self.invoke_kwargs)
        except Exception as exc:
            raise self._error(exc) from exc
        return self._proposal(answer, started, shown)

    async def apropose(self, context: Context | str) -> Proposal:
        started = time.perf_counter()
        text, shown = self.prompt_text(context)
        try:
            call = self.model.ainvoke(self.messages_for(text), **self.invoke_kwargs)
            answer = await (asyncio.wait_for(call, self.timeout) if self.timeout else call)
        except Exception as exc:
            raise self._error(exc) from exc
        return self._proposal(answer, started, shown)
