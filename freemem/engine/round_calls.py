"""Calling a cleaner or a summariser for one round: within the round's deadline (a sync call runs in a daemon
worker thread, so a hung call is left behind rather than waited for), and its answer checked into a
:class:`~freemem.core.cleaner.Proposal` the round can use, or an error saying why it is not one. Every failure
is returned, not raised: the round loop fails open on it (a warning, the event's error, the state unchanged)."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from typing import Any

from freemem.core.cleaner import Cleaner, Proposal
from freemem.core.commands import Command
from freemem.core.context import Context
from freemem.core.errors import CleanerError, CleanerTimeout

__all__ = ["as_proposal", "bound_summarizer", "call_within", "cleaner_deadline_error", "propose_within",
           "summary_deadline_error"]


def bound_summarizer(model: Any, max_tokens: int) -> Any:
    """The summariser with its answer bounded (``bind(max_tokens=...)`` where the model supports it)."""
    bind = getattr(model, "bind", None)
    if bind is None:
        return model
    try:
        return bind(max_tokens=max_tokens)
    except Exception:  # noqa: BLE001 - a model that cannot bind answers unbounded; the digest is truncated
        return model


def cleaner_deadline_error(cleaner: Cleaner, seconds: float | None) -> CleanerTimeout:
    return CleanerTimeout(f"cleaner {cleaner.name} exceeded {seconds:g} s (RoundPolicy.timeout, formerly "
                          "round_timeout); abandoned")


def summary_deadline_error(seconds: float | None) -> CleanerTimeout:
    return CleanerTimeout(f"summarizer exceeded {seconds:g} s (RoundPolicy.timeout, formerly round_timeout); "
                          "abandoned")


def propose_within(cleaner: Cleaner, context: Context, seconds: float | None) -> Any:
    """``cleaner.propose(context)``, or the exception it raised, or a :class:`CleanerTimeout` once ``seconds``
    pass (see :func:`call_within`)."""
    return call_within(lambda: cleaner.propose(context), seconds, f"freemem-cleaner-{cleaner.name}",
                        lambda: cleaner_deadline_error(cleaner, seconds))


def call_within(call: Callable[[], Any], seconds: float | None, name: str,
                 on_deadline: Callable[[], Exception]) -> Any:
    """``call()``, or the exception it raised, or ``on_deadline()`` once ``seconds`` pass. With a
    deadline the call runs in a daemon worker thread (in a copy of the caller's contextvars), so a hung call is
    left behind rather than waited for; Python cannot kill a thread, and its late answer is dropped."""
    if seconds is None:
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 - fail open: the caller decides
            return exc
    box: list[Any] = []
    done = threading.Event()
    run_in_context = contextvars.copy_context().run

    def work() -> None:
        try:
            box.append(run_in_context(call))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            box.append(exc)
        finally:
            done.set()

    worker = threading.Thread(target=work, name=name, daemon=True)
    worker.start()
    if not done.wait(seconds):
        return on_deadline()
    answer = box[0]
    if isinstance(answer, BaseException) and not isinstance(answer, Exception):
        raise answer  # KeyboardInterrupt, SystemExit: not a cleaner failure
    return answer


def as_proposal(cleaner: Cleaner, answer: Any) -> Proposal | BaseException:
    """``answer`` as a :class:`Proposal` the round can use, or an error saying why it is not one.

    A cleaner returning garbage fails its round like a cleaner that raises (a warning, the event's error);
    a plain list of :class:`Command` is accepted as a proposal."""
    if isinstance(answer, BaseException):
        return answer
    name = cleaner.name
    if isinstance(answer, list) and all(isinstance(c, Command) for c in answer):
        return Proposal(commands=answer, cleaner=name)
    if not isinstance(answer, Proposal):
        return CleanerError(f"cleaner {name} returned {type(answer).__name__}, not a Proposal or a list of Command")
    if not isinstance(answer.commands, list) or not all(isinstance(c, Command) for c in answer.commands):
        bad = answer.commands if not isinstance(answer.commands, list) else next(
            c for c in answer.commands if not isinstance(c, Command))
        return CleanerError(f"cleaner {name} proposed {type(bad).__name__} where a Command belongs")
    if not isinstance(answer.latency_s, (int, float)) or not isinstance(answer.usage, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in answer.usage.values()):
        return CleanerError(f"cleaner {name} returned a Proposal whose latency_s or usage is not numeric")
    if answer.note is not None and not isinstance(answer.note, str):
        return CleanerError(f"cleaner {name} returned a Proposal whose note is not a string")
    return answer


