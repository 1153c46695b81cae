"""The one generator driver: the same steps give the same answer sync and async, errors reach the steps."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from freemem.driving import SLEEP_HANDLERS, Sleep, adrive, drive


@dataclass(frozen=True)
class Ask:
    question: str


class LoudAsk(Ask):
    pass


def steps(log: list[str]):
    answer = yield Ask("a")
    log.append(answer)
    yield Sleep(0)
    try:
        answer = yield LoudAsk("b")
    except ValueError as exc:
        answer = f"caught {exc}"
    log.append(answer)
    return "+".join(log)


def test_drive_dispatches_by_type_along_the_mro_and_throws_errors_into_the_steps() -> None:
    def ask(req: Ask) -> str:
        if isinstance(req, LoudAsk):
            raise ValueError("loud")
        return req.question.upper()

    assert drive(steps([]), {Ask: ask, **SLEEP_HANDLERS["sync"]}) == "A+caught loud"


def test_adrive_is_the_same_steps_with_awaited_handlers() -> None:
    async def ask(req: Ask) -> str:
        if isinstance(req, LoudAsk):
            raise ValueError("loud")
        return req.question.upper()

    assert asyncio.run(adrive(steps([]), {Ask: ask, **SLEEP_HANDLERS["async"]})) == "A+caught loud"


def test_fail_open_sends_the_exception_as_the_answer() -> None:
    def gen():
        answer = yield "x"
        return answer

    def boom(_req: object) -> None:
        raise RuntimeError("down")

    result = drive(gen(), boom, fail_open=True)
    assert isinstance(result, RuntimeError) and str(result) == "down"
    with pytest.raises(RuntimeError, match="down"):
        drive(gen(), boom)


def test_a_request_without_a_handler_is_a_type_error_naming_both() -> None:
    with pytest.raises(TypeError, match="no handler for a Sleep request.*Ask"):
        drive(steps([]), {Ask: lambda r: r.question})


def test_cancellation_is_thrown_in_so_the_steps_can_clean_up() -> None:
    cleaned: list[bool] = []

    def gen():
        try:
            yield "x"
        finally:
            cleaned.append(True)

    async def hang(_req: object) -> None:
        await asyncio.sleep(30)

    async def main() -> None:
        task = asyncio.create_task(adrive(gen(), hang))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert cleaned == [True]
