#!/usr/bin/env python3
"""Write ``freemem/data/demo_session.json``: the recorded tool-use session ``freemem demo`` replays.

The session is written for the project (not copied from any dataset): a coding agent in a small payments
service, three user turns — fix failing refund tests, add a regression test, find why CI got slow — with the
tool outputs such a session really produces: directory listings, whole source files, pytest runs with long
tracebacks, a service log stuck in a retry loop, ``pip list``, ``git log``, profiler tables, re-runs of the same
command. Everything is deterministic (a fixed seed), so the file is reproducible::

    python scripts/make_demo_session.py            # rewrites freemem/data/demo_session.json
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

RNG = random.Random(20261123)
OUT = Path(__file__).resolve().parent.parent / "freemem" / "data" / "demo_session.json"

MODULES = ["api/routes", "api/schemas", "api/deps", "billing/refunds", "billing/charges", "billing/ledger",
           "billing/currency", "billing/fees", "core/config", "core/db", "core/events", "core/retry",
           "integrations/stripe_client", "integrations/webhooks", "workers/settlement", "workers/reconcile"]
WORDS = ["amount", "currency", "refund", "charge", "ledger", "entry", "account", "balance", "fee", "rate",
         "settlement", "payout", "invoice", "customer", "merchant", "status", "event", "retry", "timeout",
         "cents", "decimal", "rounding", "partial", "total", "pending", "captured", "reversed", "batch"]


def ident(k: int = 2) -> str:
    return "_".join(RNG.sample(WORDS, k))


def python_module(path: str, functions: int = 12) -> str:
    """A plausible module of the service, ~15 lines a function."""
    name = path.split("/")[-1]
    lines = [f'"""{name.replace("_", " ").title()} for the payments service."""', "",
             "from __future__ import annotations", "", "import logging",
             "from dataclasses import dataclass, field", "from decimal import Decimal, ROUND_HALF_EVEN",
             "from typing import Iterable", "", "from payments.core.config import settings",
             "from payments.core.db import session_scope", "", f'log = logging.getLogger("payments.{name}")', ""]
    lines += ["", "@dataclass", f"class {name.title().replace('_', '')}Record:",
              f'    """One {name.replace("_", " ")} row as stored in the ledger."""', "",
              "    id: str", "    amount: Decimal", "    currency: str = \"USD\"",
              "    status: str = \"pending\"", "    metadata: dict = field(default_factory=dict)", ""]
    for _ in range(functions):
        fn = ident()
        args = ", ".join(RNG.sample(WORDS, 2))
        lines += ["", f"def {fn}({args}, *, strict: bool = False) -> Decimal:",
                  f'    """Compute the {fn.replace("_", " ")} for a {RNG.choice(WORDS)} (amounts in minor units)."""',
                  f"    if {args.split(', ')[0]} is None:",
                  f'        raise ValueError("{fn}: missing {args.split(", ")[0]}")',
                  f"    value = Decimal({args.split(', ')[0]}) * Decimal(settings.{RNG.choice(WORDS)}_factor)",
                  f"    for item in _iter_{RNG.choice(WORDS)}s({args.split(', ')[1]}):",
                  "        value -= item.amount",
                  f"        log.debug(\"{fn} step %s -> %s\", item.id, value)",
                  "    if strict and value < 0:",
                  f"        raise ValueError(f\"{fn} went negative: {{value}}\")",
                  "    return value.quantize(Decimal(\"0.01\"), rounding=ROUND_HALF_EVEN)"]
    return "\n".join(lines) + "\n"


def refunds_module(fixed: bool) -> str:
    body = python_module("billing/refunds", functions=6)
    rounding = "ROUND_HALF_EVEN" if fixed else "ROUND_DOWN"
    split = ("    shares = allocate_cents(total_cents, weights)" if fixed else
             "    shares = [int(total_cents * w / sum(weights)) for w in weights]")
    return body + f'''

def split_refund(total_cents: int, weights: list[int]) -> list[int]:
    """Split a refund across the captured charges it reverses, proportionally to ``weights``."""
    if total_cents < 0:
        raise ValueError("refund must be positive")
{split}
    return shares


def refund_amount(charge: ChargeRecord, requested: Decimal | None = None) -> Decimal:
    """The amount to refund: the full charge minus the non-refundable fee, or ``requested``."""
    fee = (charge.amount * settings.refund_fee_rate).quantize(Decimal("0.01"), rounding={rounding})
    amount = charge.amount - fee if requested is None else requested
    if amount > charge.amount:
        raise ValueError(f"refund {{amount}} exceeds charge {{charge.amount}}")
    return amount
'''


def listing() -> str:
    out = [".", "./README.md", "./pyproject.toml", "./setup.cfg", "./.github/workflows/ci.yml", "./Makefile",
           "./docker-compose.yml", "./alembic.ini"]
    for m in MODULES:
        out.append(f"./payments/{m}.py")
    for m in MODULES:
        out.append(f"./tests/{m.replace('/', '/test_')}.py")
    for _ in range(36):
        out.append(f"./migrations/versions/{RNG.randrange(16**12):012x}_{ident()}.py")
    for i in range(20):
        out.append(f"./tests/fixtures/{ident()}_{i}.json")
    return "\n".join(out) + "\n"


def traceback(test: str, expected: str, got: str) -> list[str]:
    return [f"_____________________________ {test} _____________________________", "",
            "    def " + test.split("::")[-1] + "():",
            "        charge = make_charge(amount=Decimal(\"100.00\"), captured=[3333, 3333, 3334])",
            "        shares = split_refund(10000, [3333, 3333, 3334])",
            f">       assert shares == {expected}",
            f"E       AssertionError: assert {got} == {expected}",
            f"E         At index 2 diff: {got.strip('[]').split(', ')[-1]} != {expected.strip('[]').split(', ')[-1]}",
            "E         Full diff:", f"E         - {expected}", f"E         + {got}", "",
            f"tests/billing/test_refunds.py:{RNG.randint(40, 300)}: AssertionError",
            "----------------------------- Captured log call ------------------------------",
            *[f"DEBUG    payments.refunds:refunds.py:{RNG.randint(20, 200)} {ident()} step ch_{RNG.randrange(10**8)} -> "
              f"{RNG.randint(1, 9999)}.{RNG.randint(0, 99):02d}" for _ in range(14)]]


def pytest_run(failing: int, total: int = 212, extra_fail: str | None = None) -> str:
    out = ["============================= test session starts ==============================",
           "platform linux -- Python 3.11.9, pytest-8.3.3, pluggy-1.5.0",
           "rootdir: /workspace/payments", "configfile: pyproject.toml", "plugins: asyncio-0.23.8, cov-5.0.0",
           f"collected {total} items", ""]
    files = [m.replace("/", "/test_") for m in MODULES]
    left = failing
    for f in files:
        n = RNG.randint(8, 18)
        marks = "".join("F" if (left > 0 and f == "billing/test_refunds" and i % 3 == 0 and (left := left - 1) >= 0)
                        else "." for i in range(n))
        out.append(f"tests/{f}.py {marks}{' ' * max(1, 40 - len(marks))}[{RNG.randint(1, 99):>3}%]")
    out += ["", "=================================== FAILURES ==================================="]
    cases = ["test_split_refund_three_way", "test_partial_refund_rounding", "test_refund_fee_half_cent",
             "test_refund_after_currency_conversion", "test_split_refund_many_small"][:failing]
    for c in cases:
        out += traceback(f"tests/billing/test_refunds.py::{c}", "[3333, 3333, 3334]", "[3333, 3333, 3333]")
    if extra_fail:
        out += [extra_fail]
    out += ["=========================== short test summary info ============================"]
    out += [f"FAILED tests/billing/test_refunds.py::{c} - AssertionError" for c in cases]
    out += [f"======================= {failing} failed, {total - failing} passed in {RNG.uniform(40, 90):.2f}s "
            "======================="]
    return "\n".join(out) + "\n"


def service_log(repeats: int) -> str:
    head = [f"2026-11-{RNG.randint(10, 20)}T09:{m:02d}:{RNG.randint(0, 59):02d}Z INFO settlement worker-{RNG.randint(1, 6)} "
            f"picked batch b_{RNG.randrange(10**6):06d} ({RNG.randint(20, 400)} refunds)" for m in range(40)]
    loop = ("2026-11-20T10:14:07Z WARNING settlement retrying refund batch b_771204 (attempt {n}/∞)\n"
            "Traceback (most recent call last):\n"
            '  File "/app/payments/workers/settlement.py", line 142, in settle_batch\n'
            "    ledger.post(entries)\n"
            '  File "/app/payments/billing/ledger.py", line 88, in post\n'
            "    raise LedgerImbalance(total, expected)\n"
            "payments.billing.ledger.LedgerImbalance: entries sum to 99.99, expected 100.00\n")
    return "\n".join(head) + "\n" + "".join(loop.format(n=i + 1) for i in range(repeats))


def pip_list() -> str:
    pkgs = ["fastapi", "pydantic", "sqlalchemy", "alembic", "psycopg", "httpx", "stripe", "redis", "celery",
            "uvicorn", "pytest", "pytest-asyncio", "pytest-cov", "hypothesis", "freezegun", "mypy", "ruff",
            "black", "structlog", "orjson", "tenacity", "boto3", "botocore", "s3transfer", "jmespath", "anyio",
            "sniffio", "idna", "certifi", "charset-normalizer", "urllib3", "typing-extensions", "annotated-types",
            "starlette", "click", "h11", "kombu", "billiard", "vine", "amqp", "greenlet", "mako", "markupsafe",
            "python-dateutil", "six", "tzdata", "coverage", "iniconfig", "packaging", "pluggy", "attrs",
            "sortedcontainers", "mypy-extensions", "pathspec", "platformdirs", "tomli", "watchfiles", "websockets",
            "uvloop", "httptools", "python-dotenv", "pyyaml", "email-validator", "dnspython", "prometheus-client",
            "opentelemetry-api", "opentelemetry-sdk", "deprecated", "wrapt", "importlib-metadata", "zipp"]
    rows = ["Package                  Version", "------------------------ ---------"]
    rows += [f"{p:<24} {RNG.randint(0, 9)}.{RNG.randint(0, 40)}.{RNG.randint(0, 20)}" for p in pkgs]
    return "\n".join(rows) + "\n"


def git_log(n: int) -> str:
    verbs = ["fix", "add", "refactor", "bump", "tune", "document", "drop", "speed up"]
    return "\n".join(f"{RNG.randrange(16**7):07x} {RNG.choice(verbs)} {ident()} ({RNG.choice(['ana', 'bo', 'chen', 'dev-bot'])}, "
                     f"{RNG.randint(1, 30)} days ago)" for _ in range(n)) + "\n"


def grep(pattern: str, hits: int) -> str:
    return "\n".join(f"payments/{RNG.choice(MODULES)}.py:{RNG.randint(10, 400)}:    "
                     f"{ident()} = {pattern}({RNG.choice(WORDS)}, {RNG.choice(WORDS)})" for _ in range(hits)) + "\n"


def durations() -> str:
    rows = ["============================= slowest 40 durations =============================="]
    for _ in range(40):
        rows.append(f"{RNG.uniform(0.5, 14):.2f}s call     tests/{RNG.choice(MODULES).replace('/', '/test_')}.py::"
                    f"test_{ident(3)}")
    return "\n".join(rows) + "\n"


def profile_table() -> str:
    rows = ["   ncalls  tottime  percall  cumtime  percall filename:lineno(function)"]
    for _ in range(90):
        rows.append(f"{RNG.randint(1, 90000):>9} {RNG.uniform(0, 9):>8.3f} {RNG.uniform(0, 0.01):>8.5f} "
                    f"{RNG.uniform(0, 30):>8.3f} {RNG.uniform(0, 0.1):>8.5f} payments/{RNG.choice(MODULES)}.py:"
                    f"{RNG.randint(1, 400)}({ident()})")
    return "\n".join(rows) + "\n"


def step(text: str, name: str, output: str, **args: Any) -> dict[str, Any]:
    return {"assistant": text, "tool_calls": [{"name": name, "args": args, "output": output}]}


def build() -> dict[str, Any]:
    t1: list[dict[str, Any]] = [
        step("Let me look at the repository layout first.", "bash", listing(), command="find . -type f | sort"),
        step("I'll read the README to see how tests are run.", "read_file",
             "# payments\n\nRefunds, charges and settlement for the shop.\n\n## Tests\n\n    make test\n\n"
             "Runs `pytest -q` against a throwaway Postgres (docker compose up db).\n" * 3, path="README.md"),
        step("Running the test suite to see what fails.", "bash", pytest_run(5), command="make test"),
        step("All five failures are in refund splitting. Reading the refunds module.", "read_file",
             refunds_module(False), path="payments/billing/refunds.py"),
        step("Let me see how charges are represented.", "read_file", python_module("billing/charges", 14),
             path="payments/billing/charges.py"),
        step("Where is split_refund used?", "bash", grep("split_refund", 42), command="grep -rn split_refund payments"),
        step("Checking the currency helpers for an allocation function.", "read_file",
             python_module("billing/currency", 16), path="payments/billing/currency.py"),
        step("Is there an allocate helper already?", "bash", grep("allocate_cents", 12),
             command="grep -rn allocate_cents payments"),
        step("Let me check the settlement worker logs for the production symptom.", "bash", service_log(60),
             command="docker compose logs settlement --tail 600"),
        step("The worker is stuck retrying an imbalanced batch: 99.99 vs 100.00, the same rounding bug. "
             "Reading the ledger.", "read_file", python_module("billing/ledger", 14), path="payments/billing/ledger.py"),
        step("Checking the configuration for the fee rate.", "read_file", python_module("core/config", 10),
             path="payments/core/config.py"),
        step("Fixing split_refund to use the largest-remainder allocation.", "edit_file",
             "Edited payments/billing/refunds.py: 1 replacement (line 118).",
             path="payments/billing/refunds.py",
             old="shares = [int(total_cents * w / sum(weights)) for w in weights]",
             new="shares = allocate_cents(total_cents, weights)"),
        step("Re-running the refund tests.", "bash", pytest_run(2), command="pytest -q tests/billing"),
        step("Two left: the fee rounding. Reading the fee module.", "read_file", python_module("billing/fees", 12),
             path="payments/billing/fees.py"),
        step("Switching the fee quantisation to banker's rounding, as the ledger does.", "edit_file",
             "Edited payments/billing/refunds.py: 1 replacement (line 127).", path="payments/billing/refunds.py",
             old="rounding=ROUND_DOWN", new="rounding=ROUND_HALF_EVEN"),
        step("Running the whole suite again.", "bash", pytest_run(0), command="make test"),
        step("Verifying the worker now settles the stuck batch.", "bash", service_log(3) +
             "2026-11-20T10:31:55Z INFO settlement batch b_771204 settled (412 refunds)\n",
             command="docker compose restart settlement && docker compose logs settlement --tail 200"),
        step("Reviewing the diff.", "bash", "diff --git a/payments/billing/refunds.py b/payments/billing/refunds.py\n"
             "-    shares = [int(total_cents * w / sum(weights)) for w in weights]\n"
             "+    shares = allocate_cents(total_cents, weights)\n"
             "-    fee = (charge.amount * settings.refund_fee_rate).quantize(Decimal(\"0.01\"), rounding=ROUND_DOWN)\n"
             "+    fee = (charge.amount * settings.refund_fee_rate).quantize(Decimal(\"0.01\"), rounding=ROUND_HALF_EVEN)\n",
             command="git diff"),
    ]
    t2: list[dict[str, Any]] = [
        step("Reading the existing refund tests.", "read_file", python_module("tests/billing/test_refunds", 18),
             path="tests/billing/test_refunds.py"),
        step("Checking the test fixtures for multi-capture charges.", "read_file",
             json.dumps({"charges": [{"id": f"ch_{RNG.randrange(10**8)}", "amount": f"{RNG.randint(1, 900)}.{RNG.randint(0, 99):02d}",
                                      "captures": [RNG.randint(100, 5000) for _ in range(3)]} for _ in range(60)]}, indent=2),
             path="tests/fixtures/multi_capture.json"),
        step("Looking at the hypothesis strategies used elsewhere.", "bash", grep("st.integers", 30),
             command="grep -rn 'st.integers' tests"),
        step("Adding a property test: shares always sum to the refund and differ by at most one cent.", "edit_file",
             "Edited tests/billing/test_refunds.py: appended 24 lines.", path="tests/billing/test_refunds.py",
             old="", new="@given(st.integers(1, 10**7), st.lists(st.integers(1, 10**4), min_size=1, max_size=8))\n"
                         "def test_split_refund_sums_to_total(total, weights): ..."),
        step("Running the new test.", "bash", pytest_run(0, total=213), command="pytest -q tests/billing"),
        step("Also a regression test for the stuck settlement batch; reading the worker.", "read_file",
             python_module("workers/settlement", 14), path="payments/workers/settlement.py"),
        step("Adding the regression test.", "edit_file", "Edited tests/workers/test_settlement.py: appended 31 lines.",
             path="tests/workers/test_settlement.py", old="", new="def test_batch_771204_settles(): ..."),
        step("Running the worker tests.", "bash", pytest_run(0, total=214), command="pytest -q tests/workers"),
    ]
    t3: list[dict[str, Any]] = [
        step("Reading the CI workflow.", "read_file",
             "name: ci\non: [push, pull_request]\njobs:\n  test:\n    runs-on: ubuntu-latest\n    services:\n"
             "      postgres:\n        image: postgres:16\n    steps:\n      - uses: actions/checkout@v4\n"
             "      - run: pip install -e .[test]\n      - run: make test\n" * 2, path=".github/workflows/ci.yml"),
        step("Which dependencies are installed in CI?", "bash", pip_list(), command="pip list"),
        step("Recent history, to see when it got slow.", "bash", git_log(60), command="git log --oneline -60"),
        step("Timing the suite.", "bash", durations(), command="pytest -q --durations=40"),
        step("The reconcile tests dominate. Reading them.", "read_file",
             python_module("tests/workers/test_reconcile", 20), path="tests/workers/test_reconcile.py"),
        step("Profiling one slow test.", "bash", profile_table(),
             command="python -m cProfile -s cumtime -m pytest -q tests/workers/test_reconcile.py -k big_batch"),
        step("Most time is in the retry helper's sleeps. Reading core/retry.py.", "read_file",
             python_module("core/retry", 10), path="payments/core/retry.py"),
        step("Where do tests configure retries?", "bash", grep("retry_backoff", 36),
             command="grep -rn retry_backoff payments tests"),
        step("Timing again after patching the backoff in the test settings.", "edit_file",
             "Edited tests/conftest.py: 2 lines.", path="tests/conftest.py", old="",
             new="settings.retry_backoff = 0\nsettings.retry_jitter = 0"),
        step("Re-running the durations.", "bash", durations(), command="pytest -q --durations=40"),
        step("Full suite timing.", "bash", pytest_run(0, total=214), command="make test"),
    ]
    return {
        "title": "payments service: fix refund rounding, add a regression test, speed up CI",
        "system": "You are a careful coding agent working in the repository at /workspace/payments. Use the tools "
                  "to inspect, edit and test the code. Keep answers short and cite the files you changed.",
        "turns": [
            {"user": "The refund tests are failing on main and settlement is stuck in production. "
                     "Please find the cause and fix it.", "steps": t1,
             "final": "Fixed: split_refund truncated each share (a cent went missing on three-way splits) and the fee "
                      "was rounded down. payments/billing/refunds.py now uses allocate_cents and ROUND_HALF_EVEN; "
                      "all 212 tests pass and batch b_771204 settled."},
            {"user": "Great. Add tests so this can't come back.", "steps": t2,
             "final": "Added a property test (shares sum to the refund, differ by ≤1 cent) in "
                      "tests/billing/test_refunds.py and a regression test for batch b_771204 in "
                      "tests/workers/test_settlement.py. 214 tests pass."},
            {"user": "CI got slow recently. Why, and can you fix it?", "steps": t3,
             "final": "The reconcile tests slept through real retry backoffs (core/retry.py). tests/conftest.py now "
                      "sets retry_backoff and retry_jitter to 0; the suite dropped from ~85 s to ~40 s."},
        ],
    }


def main() -> None:
    session = build()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(session, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    steps = sum(len(t["steps"]) for t in session["turns"])
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KiB, {len(session['turns'])} turns, {steps} tool steps)")


if __name__ == "__main__":
    main()
