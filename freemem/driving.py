"""One driver for the I/O-request generators that every sync/async pair in freemem is written as.

A piece of logic that needs I/O (ask a cleaner, call a model, send an HTTP request, sleep before a retry) is
written once as a generator: it *yields* a request object and *receives* the answer (httpx's auth-flow idea).
The sync and async twins then differ only in the handlers that do the I/O::

    def steps(context):                      # the logic, once
        answer = yield Ask(context)
        return parse(answer)

    drive(steps(c), {Ask: model.invoke})             # sync
    await adrive(steps(c), {Ask: model.ainvoke})     # async: each handler returns an awaitable

Used by the round loop (:class:`freemem.FreeMemory`), the ``summarize`` and ``gated`` policies, the Free-Module
cleaner and the reasoner's generation requests.

Errors: by default an exception a handler raises is *thrown into* the generator at its ``yield``, as if the
generator had made the call itself, so it can catch it (``try: r = yield req except X: ...``) or let it
propagate out of the driver. With ``fail_open=True`` an :class:`Exception` is *sent* to the generator as the
answer instead (it then decides, e.g. skip a round); :class:`BaseException` (cancellation, KeyboardInterrupt)
is always thrown in.

This module is core: it imports nothing outside the standard library.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = ["CALL_HANDLERS", "SLEEP_HANDLERS", "Call", "Handlers", "Sleep", "adrive", "drive", "handler_for"]

R = TypeVar("R")

#: What a driver is given to answer requests: one callable for every request, or callables by request type
#: (looked up along the request type's MRO, so a handler for a base class serves its subclasses).
Handlers = Callable[[Any], Any] | Mapping[type, Callable[[Any], Any]]


@dataclass(frozen=True)
class Sleep:
    """A request to wait ``seconds`` (a retry's backoff); :data:`SLEEP_HANDLERS` answers it in each mode."""

    seconds: float


def _sleep(request: Sleep) -> None:
    time.sleep(request.seconds)


async def _asleep(request: Sleep) -> None:
    await asyncio.sleep(request.seconds)


#: Handlers for :class:`Sleep`, sync and async, to merge into a driver's handlers.
SLEEP_HANDLERS: dict[str, dict[type, Callable[[Any], Any]]] = {"sync": {Sleep: _sleep}, "async": {Sleep: _asleep}}


@dataclass(frozen=True)
class Call:
    """A request to call ``target.name(*args, **kwargs)`` -- or, driven async, ``await target.aname(...)``:
    freemem's (and LangGraph's) naming of sync/async twins, so steps over any object with such twins (an
    archive, a checkpointer) are written once. :data:`CALL_HANDLERS` answers it in each mode."""

    target: Any
    name: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)


def _call(request: Call) -> Any:
    return getattr(request.target, request.name)(*request.args, **request.kwargs)


def _acall(request: Call) -> Awaitable[Any]:
    return getattr(request.target, "a" + request.name)(*request.args, **request.kwargs)  # type: ignore[no-any-return]


#: Handlers for :class:`Call` and :class:`Sleep`, sync and async, to pass to a driver (or merge into its own).
CALL_HANDLERS: dict[str, dict[type, Callable[[Any], Any]]] = {
    "sync": {Call: _call, **SLEEP_HANDLERS["sync"]},
    "async": {Call: _acall, **SLEEP_HANDLERS["async"]},
}


def handler_for(handlers: Handlers, request: Any) -> Callable[[Any], Any]:
    """The handler of ``request``: ``handlers`` itself when it is a callable, else the entry for the nearest
    class of ``request``'s MRO. Raises :class:`TypeError` when there is none (a generator asked for I/O that
    its driver does not do: a programming error, not a failed call)."""
    if not isinstance(handlers, Mapping):
        return handlers
    for klass in type(request).__mro__:
        handler = handlers.get(klass)
        if handler is not None:
            return handler
    known = ", ".join(sorted(k.__name__ for k in handlers))
    raise TypeError(f"no handler for a {type(request).__name__} request (handlers for: {known})")


def drive(steps: Generator[Any, Any, R], handlers: Handlers, *, fail_open: bool = False) -> R:
    """Run ``steps`` to its end, answering each yielded request with its handler; return the generator's value.

    Args:
        steps: the generator (started here).
        handlers: a callable for every request, or callables by request type (see :data:`Handlers`).
        fail_open: send a handler's :class:`Exception` to the generator as its answer instead of throwing it in.
    """
    try:
        request = next(steps)
        while True:
            try:
                response = handler_for(handlers, request)(request)
            except Exception as exc:  # noqa: BLE001 - the generator decides (catch, or let it propagate)
                request = steps.send(exc) if fail_open else steps.throw(exc)
            except BaseException as exc:  # noqa: BLE001 - cancellation: the generator may clean up, then it propagates
                request = steps.throw(exc)
            else:
                request = steps.send(response)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


async def adrive(steps: Generator[Any, Any, R], handlers: Handlers, *, fail_open: bool = False) -> R:
    """Async twin of :func:`drive`: each handler returns an awaitable, which is awaited."""
    try:
        request = next(steps)
        while True:
            try:
                pending: Awaitable[Any] = handler_for(handlers, request)(request)
                response = await pending
            except Exception as exc:  # noqa: BLE001 - the generator decides (catch, or let it propagate)
                request = steps.send(exc) if fail_open else steps.throw(exc)
            except BaseException as exc:  # noqa: BLE001 - cancellation: the generator may clean up, then it propagates
                request = steps.throw(exc)
            else:
                request = steps.send(response)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
