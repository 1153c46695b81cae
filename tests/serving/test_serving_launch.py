"""``freemem serve``: command shapes (dry run, no GPU) and a real llama.cpp start."""

from __future__ import annotations

import argparse
import io
import json
import os
import shlex
import signal
import time
import urllib.request

import pytest

from freemem.core.errors import ConfigError, ServeError
from freemem.serving.commands import build_plan
from freemem.serving.launch import add_arguments, run
from freemem.serving.process import wait_for_health
from freemem.serving.specs import AdapterSpec, ServeSpec
from tests.support.llama_server import free_port


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="freemem serve")
    add_arguments(parser)
    return parser.parse_args(list(argv))


def dry_run(*argv: str) -> str:
    out = io.StringIO()
    assert run(parse(*argv, "--dry-run", "--python", "/envs/sglang/bin/python"), out=out) == 0
    return out.getvalue()


def test_sglang_dry_run_for_the_released_adapter() -> None:
    printed = dry_run("--backend", "sglang", "--model", "Qwen/Qwen3-8B",
                      "--adapter", "free=ldsjmdy/Qwen3-8B-FreeLM-LoRA")
    assert shlex.split(printed.strip()) == [
        "/envs/sglang/bin/python", "-m", "sglang.launch_server", "--model-path", "Qwen/Qwen3-8B",
        "--enable-lora", "--lora-paths", "free=ldsjmdy/Qwen3-8B-FreeLM-LoRA",
        "--tp-size", "1", "--dp-size", "1", "--host", "127.0.0.1", "--port", "30000",
    ]


def test_sglang_all_options() -> None:
    argv = shlex.split(dry_run(
        "--model", "Qwen/Qwen3-235B-A22B-Thinking-2507", "--adapter", "free=/ckpt/free lora",
        "--adapter", "other=/ckpt/other", "--tp", "8", "--dp", "2", "--context-length", "32768",
        "--max-loras-per-batch", "2", "--max-lora-rank", "64", "--host", "0.0.0.0", "--port", "31000",
        "--served-model-name", "qwen", "--server-args", "--mem-fraction-static 0.8",
    ).strip())
    assert argv[argv.index("--lora-paths") + 1: argv.index("--lora-paths") + 3] == ["free=/ckpt/free lora",
                                                                                  "other=/ckpt/other"]
    for flag, value in [("--tp-size", "8"), ("--dp-size", "2"), ("--context-length", "32768"),
                        ("--max-loras-per-batch", "2"), ("--max-lora-rank", "64"), ("--port", "31000"),
                        ("--served-model-name", "qwen"), ("--mem-fraction-static", "0.8")]:
        assert argv[argv.index(flag) + 1] == value
    assert "--enable-lora" in argv


def test_sglang_plan_tells_the_cleaner_how_to_connect() -> None:
    plan = build_plan(ServeSpec("sglang", "Qwen/Qwen3-8B", (AdapterSpec.parse("free=ldsjmdy/Qwen3-8B-FreeLM-LoRA"),),
                                host="0.0.0.0"))
    assert plan.base_url == "http://127.0.0.1:30000/v1"
    assert (plan.model, plan.adapter, plan.adapter_mode) == ("Qwen/Qwen3-8B", "free", "model_suffix")
    assert plan.cleaner_snippet() == (
        "FreeModuleCleaner('http://127.0.0.1:30000/v1', model='Qwen/Qwen3-8B', adapter='free')")


def test_vllm_dry_run() -> None:
    argv = shlex.split(dry_run("--backend", "vllm", "--model", "Qwen/Qwen3-8B", "--adapter",
                               "ldsjmdy/Qwen3-8B-FreeLM-LoRA", "--tp", "2", "--context-length", "32768").strip())
    assert argv[1:5] == ["-m", "vllm.entrypoints.openai.api_server", "--model", "Qwen/Qwen3-8B"]
    assert argv[argv.index("--lora-modules") + 1] == "free=ldsjmdy/Qwen3-8B-FreeLM-LoRA"
    assert argv[argv.index("--tensor-parallel-size") + 1] == "2"
    assert argv[argv.index("--max-model-len") + 1] == "32768"
    plan = build_plan(ServeSpec("vllm", "Qwen/Qwen3-8B", (AdapterSpec("free", "x"),)))
    assert (plan.adapter_mode, plan.base_url) == ("model", "http://127.0.0.1:8000/v1")


def test_llamacpp_dry_run_prints_command_and_config(tmp_path) -> None:
    cfg = tmp_path / "server.json"
    printed = dry_run("--backend", "llamacpp", "--model", "/m/base.gguf", "--adapter", "free=/m/free.gguf",
                      "--context-length", "20480", "--threads", "2", "--config-file", str(cfg))
    first, rest = printed.split("\n", 1)
    assert shlex.split(first) == ["/envs/sglang/bin/python", "-m", "llama_cpp.server", "--config_file", str(cfg)]
    config = json.loads(rest.split("\n", 1)[1])
    assert not cfg.exists()  # a dry run writes nothing
    assert config["port"] == 8080 and config["host"] == "127.0.0.1"
    base, free = config["models"]
    assert base == {"model": "/m/base.gguf", "model_alias": "base", "n_ctx": 20480, "n_gpu_layers": 0,
                    "logits_all": False, "verbose": False, "n_threads": 2, "n_threads_batch": 2}
    assert free["model_alias"] == "base:free" and free["lora_path"] == "/m/free.gguf"


def test_llamacpp_server_args_go_into_the_config(tmp_path) -> None:
    """llama-cpp-python ignores its command line once it reads a config file: --server-args must be written
    into the config (model settings into every model entry, server settings at the top), not dropped."""
    printed = dry_run("--backend", "llamacpp", "--model", "/m/base.gguf", "--adapter", "free=/m/free.gguf",
                      "--config-file", str(tmp_path / "c.json"),
                      "--server-args", "--chat_format chatml --n_batch=256 --n-ctx 4096",
                      "--server-args", "--interrupt_requests false --tensor_split 0.5 0.5")
    first, rest = printed.split("\n", 1)
    assert shlex.split(first)[-2:] == ["--config_file", str(tmp_path / "c.json")]  # nothing after it
    config = json.loads(rest.split("\n", 1)[1])
    assert config["interrupt_requests"] is False and "chat_format" not in config
    for model in config["models"]:
        assert model["chat_format"] == "chatml" and model["n_batch"] == 256 and model["n_ctx"] == 4096
        assert model["tensor_split"] == [0.5, 0.5]
    assert {m["model_alias"] for m in config["models"]} == {"base", "base:free"}


@pytest.mark.parametrize(("args", "match"), [
    ("chatml", "--option value pairs"),
    ("--model /other.gguf", "use --model"),
    ("--port 1", "use --port"),
    ("--chat_fromat chatml", "not a llama-cpp-python server setting"),
])
def test_llamacpp_bad_server_args(args: str, match: str) -> None:
    pytest.importorskip("llama_cpp.server.settings", reason="setting names are checked against llama-cpp-python")
    with pytest.raises(ConfigError, match=match):
        run(parse("--backend", "llamacpp", "--model", "/m/base.gguf", "--server-args", args, "--dry-run"),
            out=io.StringIO())


@pytest.mark.parametrize("bad", ["=path", "name=", "a:b=path", "a b=path"])
def test_bad_adapter_specs(bad: str) -> None:
    with pytest.raises(ConfigError):
        AdapterSpec.parse(bad)


def test_bad_specs_raise_config_errors() -> None:
    with pytest.raises(ConfigError, match="--tp"):
        run(parse("--model", "m", "--tp", "0", "--dry-run"))
    with pytest.raises(ConfigError, match="unique"):
        run(parse("--model", "m", "--adapter", "x=1", "--adapter", "x=2", "--dry-run"))


def test_cli_prints_the_command_and_one_line_errors(capsys) -> None:
    from freemem.cli.main import main

    assert main(["serve", "--backend", "sglang", "--dry-run", "--model", "Qwen/Qwen3-8B",
                 "--adapter", "free=ldsjmdy/Qwen3-8B-FreeLM-LoRA"]) == 0
    printed = shlex.split(capsys.readouterr().out.strip())
    assert printed[1:] == ["-m", "sglang.launch_server", "--model-path", "Qwen/Qwen3-8B", "--enable-lora",
                           "--lora-paths", "free=ldsjmdy/Qwen3-8B-FreeLM-LoRA", "--tp-size", "1", "--dp-size", "1",
                           "--host", "127.0.0.1", "--port", "30000"]
    assert main(["serve", "--model", "m", "--adapter", "a:b=x", "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("freemem: error: adapter name") and err.count("\n") == 1


def test_server_that_exits_at_once_is_a_serve_error(tmp_path) -> None:
    # an interpreter that is not Python: the "server" exits at once, and run() says so
    args = parse("--backend", "sglang", "--model", "m", "--python", "false", "--port", str(free_port()),
                 "--startup-timeout", "20")
    with pytest.raises(ServeError, match="exited with code 1"):
        run(args, out=io.StringIO())


def test_wait_for_health_notices_nothing_listens() -> None:
    with pytest.raises(ServeError, match="not ready"):
        wait_for_health(f"http://127.0.0.1:{free_port()}/v1", timeout=0.3, interval=0.1)


@pytest.mark.llamacpp
def test_llamacpp_real_start_detached(tiny_model, tmp_path) -> None:
    from tests.support.llama_server import llama_cpp_available

    if not llama_cpp_available():
        pytest.skip('llama-cpp-python is not installed (pip install "llama-cpp-python[server]")')
    port = free_port()
    out = io.StringIO()
    args = parse("--backend", "llamacpp", "--model", str(tiny_model.model), "--adapter", f"free={tiny_model.adapter}",
                 "--port", str(port), "--threads", "2", "--context-length", "2048",
                 "--config-file", str(tmp_path / "cfg.json"), "--startup-timeout", "120", "--detach",
                 "--server-args", "--chat_format chatml")
    assert run(args, out=out) == 0
    printed = out.getvalue()
    pid = int(printed.split("(pid ")[1].split(")")[0])
    try:
        assert f"http://127.0.0.1:{port}/v1" in printed and "model='tiny-qwen3'" in printed
        assert "structured_output='json_object'" in printed
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=10) as resp:
            ids = {m["id"] for m in json.load(resp)["data"]}
        assert ids == {"tiny-qwen3", "tiny-qwen3:free"}
        written = json.loads((tmp_path / "cfg.json").read_text())
        assert [m["chat_format"] for m in written["models"]] == ["chatml", "chatml"]
    finally:
        _stop_child(pid)


def _stop_child(pid: int, timeout: float = 15.0) -> None:
    """SIGTERM our detached child by PID and reap it (SIGKILL when it lingers)."""
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # already reaped
            return
        if done:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
