"""``freemem bench``: the benchmarks live outside the library (the ``freemem-bench`` distribution in ``bench/``),
the command mounts every one of them when that is installed and says how to install it when it is not."""

from __future__ import annotations

import argparse
import builtins
import importlib
import pkgutil
import subprocess
import sys
from typing import Any

import pytest

import freemem
from freemem.cli import bench as cli_bench
from freemem.core.errors import ConfigError


def test_the_library_holds_no_benchmarks() -> None:
    names = {m.name for m in pkgutil.walk_packages(freemem.__path__, "freemem.")}
    assert "freemem.cli.bench" in names  # the dispatcher is walked, so the walk reached the subpackages
    assert not [n for n in names if n == "freemem.bench" or n.startswith("freemem.bench.")]


def test_every_benchmark_is_listed_and_mounted() -> None:
    freemem_bench = pytest.importorskip("freemem_bench")
    out = subprocess.run([sys.executable, "-m", "freemem.cli.main", "bench", "--help"], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    for name in freemem_bench.BENCHMARKS:
        assert name in out.stdout
        assert hasattr(importlib.import_module(f"freemem_bench.{name}"), "run")


def test_without_the_distribution_the_command_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_bench(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "freemem_bench" or name.startswith("freemem_bench."):
            raise ModuleNotFoundError(f"No module named {name!r}", name="freemem_bench")
        return real_import(name, *args, **kwargs)

    for key in [k for k in sys.modules if k == "freemem_bench" or k.startswith("freemem_bench.")]:
        monkeypatch.delitem(sys.modules, key)
    monkeypatch.setattr(builtins, "__import__", no_bench)
    monkeypatch.setattr(importlib, "import_module", lambda name, *a: no_bench(name))
    assert cli_bench.benchmarks() is None
    parser = argparse.ArgumentParser()
    cli_bench.add_arguments(parser)
    assert "pip install -e ./bench" in (parser.description or "")
    with pytest.raises(ConfigError, match="pip install -e ./bench"):
        cli_bench.run(parser.parse_args([]))
