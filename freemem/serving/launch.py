"""``freemem serve``: build, print or run the command that serves a base model plus the Free-Module adapter.

Backends:

* ``sglang`` (GPUs): ``python -m sglang.launch_server --model-path M --enable-lora --lora-paths free=A ...``.
  SGLang pins its own torch/transformers, so it runs in *its own* environment: pass that interpreter with
  ``--python``. Requests pick the adapter with ``model="M:free"``.
* ``vllm`` (GPUs): ``python -m vllm.entrypoints.openai.api_server --model M --enable-lora --lora-modules free=A``.
  Requests pick the adapter with ``model="free"``.
* ``llamacpp`` (CPUs): llama-cpp-python's server with a JSON config listing the GGUF base model under an alias
  and, for each adapter, the same base plus ``lora_path`` under ``<alias>:<adapter>`` — the SGLang naming, so
  the cleaner is configured the same way. llama-cpp-python reads *only* the config file when it is given one,
  so ``--server-args`` (``--chat_format chatml --n_batch 256``, llama-cpp-python's own option names) go into
  the config: server settings at its top level, model settings into every model entry
  (:func:`llamacpp_settings`).

Everything up to the process start is a pure function of :class:`ServeSpec` (:func:`build_plan`), so the
commands are testable without a GPU. :func:`add_arguments` and :func:`run` mount it as a CLI subcommand.
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

from freemem.core.errors import ConfigError, FreememError, ServeError
from freemem.core.io import write_text_atomic

__all__ = [
    "AdapterSpec",
    "Backend",
    "LaunchPlan",
    "ServeSpec",
    "add_arguments",
    "build_plan",
    "llamacpp_command",
    "llamacpp_config",
    "llamacpp_settings",
    "run",
    "sglang_command",
    "vllm_command",
    "wait_for_health",
]

Backend = Literal["sglang", "vllm", "llamacpp"]
BACKENDS: tuple[str, ...] = ("sglang", "vllm", "llamacpp")
DEFAULT_PORTS: dict[str, int] = {"sglang": 30000, "vllm": 8000, "llamacpp": 8080}
DEFAULT_ADAPTER_NAME = "free"


@dataclass(frozen=True)
class AdapterSpec:
    """A LoRA adapter to serve: its request name and where it lives (HF repo id, directory or GGUF file)."""

    name: str
    path: str

    @classmethod
    def parse(cls, text: str) -> AdapterSpec:
        """``NAME=PATH``, or a bare ``PATH`` named ``free``."""
        name, sep, path = text.partition("=")
        if not sep:
            name, path = DEFAULT_ADAPTER_NAME, text
        name, path = name.strip(), path.strip()
        if not name or not path:
            raise ConfigError(f"adapter must be NAME=PATH or PATH, got {text!r}")
        if ":" in name or "/" in name or any(c.isspace() for c in name):
            raise ConfigError(f"adapter name {name!r} may not contain ':', '/' or spaces")
        return cls(name, path)


@dataclass(frozen=True)
class ServeSpec:
    """What to serve and how. Options a backend does not know are ignored by it (documented per field)."""

    backend: Backend
    model: str
    adapters: tuple[AdapterSpec, ...] = ()
    host: str = "127.0.0.1"
    port: int | None = None  # None: the backend's usual port
    python: str = field(default_factory=lambda: sys.executable)
    tp: int = 1  # sglang, vllm
    dp: int = 1  # sglang, vllm
    context_length: int | None = None  # sglang --context-length, vllm --max-model-len, llamacpp n_ctx
    max_loras_per_batch: int | None = None  # sglang --max-loras-per-batch, vllm --max-loras
    max_lora_rank: int | None = None  # sglang, vllm
    served_model_name: str | None = None  # the base model's request name (llamacpp: its alias)
    n_threads: int | None = None  # llamacpp
    n_gpu_layers: int = 0  # llamacpp
    config_file: str | None = None  # llamacpp: where the server config is written
    extra_args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if not self.model:
            raise ConfigError("a model is required")
        if self.tp < 1 or self.dp < 1:
            raise ConfigError("--tp and --dp must be >= 1")
        names = [a.name for a in self.adapters]
        if len(set(names)) != len(names):
            raise ConfigError(f"adapter names must be unique, got {names}")
        for value, label in ((self.context_length, "context length"), (self.max_loras_per_batch, "max loras"),
                             (self.max_lora_rank, "max LoRA rank"), (self.n_threads, "threads")):
            if value is not None and value < 1:
                raise ConfigError(f"{label} must be >= 1")

    @property
    def resolved_port(self) -> int:
        return self.port if self.port is not None else DEFAULT_PORTS[self.backend]


@dataclass(frozen=True)
class LaunchPlan:
    """The command to run and how a :class:`~freemem.cleaners.free_module.FreeModuleCleaner` reaches it."""

    argv: list[str]
    base_url: str  # ends in /v1
    model: str  # the base model's request name
    adapter: str | None  # the first adapter's name
    adapter_mode: str  # FreeModuleCleaner(adapter_mode=...)
    structured_output: str  # FreeModuleCleaner(structured_output=...)
    health_paths: tuple[str, ...]  # all must answer 200 before the server counts as ready
    config: dict[str, Any] | None = None  # llamacpp: the server config ...
    config_path: str | None = None  # ... and where it goes

    def shell(self) -> str:
        """The command, shell-quoted."""
        return shlex.join(self.argv)

    def cleaner_snippet(self) -> str:
        """Python that builds a cleaner for this server."""
        args = [repr(self.base_url), f"model={self.model!r}", f"adapter={self.adapter!r}"]
        if self.adapter is not None and self.adapter_mode != "model_suffix":
            args.append(f"adapter_mode={self.adapter_mode!r}")
        if self.structured_output != "json_schema":
            args.append(f"structured_output={self.structured_output!r}")
        return f"FreeModuleCleaner({', '.join(args)})"


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def sglang_command(spec: ServeSpec) -> list[str]:
    """``python -m sglang.launch_server ...`` (flag names as in SGLang's ``server_args.py``)."""
    argv = [spec.python, "-m", "sglang.launch_server", "--model-path", spec.model]
    if spec.served_model_name:
        argv += ["--served-model-name", spec.served_model_name]
    if spec.adapters:
        argv += ["--enable-lora", "--lora-paths", *(f"{a.name}={a.path}" for a in spec.adapters)]
        if spec.max_loras_per_batch is not None:
            argv += ["--max-loras-per-batch", str(spec.max_loras_per_batch)]
        if spec.max_lora_rank is not None:
            argv += ["--max-lora-rank", str(spec.max_lora_rank)]
    argv += ["--tp-size", str(spec.tp), "--dp-size", str(spec.dp)]
    if spec.context_length is not None:
        argv += ["--context-length", str(spec.context_length)]
    argv += ["--host", spec.host, "--port", str(spec.resolved_port)]
    return argv + list(spec.extra_args)


def vllm_command(spec: ServeSpec) -> list[str]:
    """``python -m vllm.entrypoints.openai.api_server ...`` (the module behind ``vllm serve``)."""
    argv = [spec.python, "-m", "vllm.entrypoints.openai.api_server", "--model", spec.model]
    if spec.served_model_name:
        argv += ["--served-model-name", spec.served_model_name]
    if spec.adapters:
        argv += ["--enable-lora", "--lora-modules", *(f"{a.name}={a.path}" for a in spec.adapters)]
        if spec.max_loras_per_batch is not None:
            argv += ["--max-loras", str(spec.max_loras_per_batch)]
        if spec.max_lora_rank is not None:
            argv += ["--max-lora-rank", str(spec.max_lora_rank)]
    argv += ["--tensor-parallel-size", str(spec.tp), "--data-parallel-size", str(spec.dp)]
    if spec.context_length is not None:
        argv += ["--max-model-len", str(spec.context_length)]
    argv += ["--host", spec.host, "--port", str(spec.resolved_port)]
    return argv + list(spec.extra_args)


def _llamacpp_base_alias(spec: ServeSpec) -> str:
    if spec.served_model_name:
        return spec.served_model_name
    name = Path(spec.model).name
    return name[: -len(".gguf")] if name.lower().endswith(".gguf") else name


#: llama-cpp-python's ``ServerSettings`` fields: these ``--server-args`` go to the config's top level, every
#: other one into each model entry (``ModelSettings``).
LLAMACPP_SERVER_KEYS = frozenset({"host", "port", "ssl_keyfile", "ssl_certfile", "api_key", "interrupt_requests",
                                  "disable_ping_events", "root_path"})
#: Settings ``freemem serve`` writes itself, from its own options.
_LLAMACPP_OWN_KEYS = {"model": "--model", "model_alias": "--served-model-name", "lora_path": "--adapter",
                      "host": "--host", "port": "--port", "config_file": "(freemem writes the config)"}


def _setting_value(words: list[str]) -> Any:
    """A ``--key v1 [v2 ...]`` option's value as llama-cpp-python's CLI would read it: JSON where the words
    parse as JSON (numbers, true/false, objects), else the text; several words make a list."""
    def one(word: str) -> Any:
        try:
            return json.loads(word)
        except ValueError:
            return word
    if not words:
        return True  # a bare flag
    return one(words[0]) if len(words) == 1 else [one(w) for w in words]


def llamacpp_settings(args: Sequence[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``--server-args`` for llama-cpp-python's server as ``(server settings, model settings)``.

    Options are llama-cpp-python's own (``--chat_format chatml``, ``--n_batch=256``, ``--tensor_split 0.5 0.5``;
    ``-`` and ``_`` both accepted). Raises :class:`ConfigError` for a word that is not an option, for settings
    that ``freemem serve`` writes itself (model, alias, adapter, host, port), and -- when llama-cpp-python is
    importable here -- for a name it does not know.
    """
    server: dict[str, Any] = {}
    model: dict[str, Any] = {}
    items: list[tuple[str, list[str]]] = []
    for word in args:
        if word.startswith("--") and len(word) > 2:
            key, sep, value = word[2:].partition("=")
            items.append((key.replace("-", "_"), [value] if sep else []))
        elif items:
            items[-1][1].append(word)
        else:
            raise ConfigError(f"--server-args for llamacpp must be --option value pairs, got {word!r}")
    known = _llamacpp_known_keys()
    for key, words in items:
        if key in _LLAMACPP_OWN_KEYS:
            raise ConfigError(f"--server-args --{key}: freemem serve sets it; use {_LLAMACPP_OWN_KEYS[key]}")
        if known is not None and key not in known:
            raise ConfigError(f"--server-args --{key}: not a llama-cpp-python server setting")
        (server if key in LLAMACPP_SERVER_KEYS else model)[key] = _setting_value(words)
    return server, model


def _llamacpp_known_keys() -> frozenset[str] | None:
    """Every setting name llama-cpp-python's server knows, or None when it is not importable here (the server
    may run in another environment: ``--python``)."""
    try:
        from llama_cpp.server.settings import ModelSettings, ServerSettings
    except Exception:  # noqa: BLE001 - not installed here, or broken: the server itself will judge
        return None
    return frozenset(ModelSettings.model_fields) | frozenset(ServerSettings.model_fields)


def llamacpp_config(spec: ServeSpec, *, verbose: bool = False) -> dict[str, Any]:
    """llama-cpp-python server config: the base model, then base + LoRA per adapter under ``<alias>:<name>``.

    llama-cpp-python keeps one model loaded and reloads when a request names another alias, so switching
    between the base and an adapter costs a model load (small for CPU-sized GGUF models). ``spec.extra_args``
    (``--server-args``) are settings of the config (:func:`llamacpp_settings`): they override freemem's own
    defaults (``n_ctx``, ``n_threads``, ``verbose``...), since llama-cpp-python ignores its command line when
    it reads a config file.
    """
    server_settings, model_settings = llamacpp_settings(spec.extra_args)
    alias = _llamacpp_base_alias(spec)
    # logits_all=False: llama-cpp-python's default (True) keeps n_ctx x n_vocab floats of logits (~12 GB for a
    # 20k window and Qwen's 151k vocabulary); a cleaner never needs prompt logprobs.
    common: dict[str, Any] = {"model": spec.model, "n_ctx": spec.context_length or 8192,
                              "n_gpu_layers": spec.n_gpu_layers, "logits_all": False, "verbose": verbose}
    if spec.n_threads is not None:
        common["n_threads"] = spec.n_threads
        common["n_threads_batch"] = spec.n_threads
    common.update(model_settings)
    models = [{**common, "model_alias": alias}]
    models += [{**common, "model_alias": f"{alias}:{a.name}", "lora_path": a.path} for a in spec.adapters]
    return {**server_settings, "host": spec.host, "port": spec.resolved_port, "models": models}


def llamacpp_command(spec: ServeSpec, config_path: str) -> list[str]:
    """``python -m llama_cpp.server --config_file PATH`` (``--server-args`` are in the config, where
    llama-cpp-python reads them: it ignores its command line once it has a config file)."""
    return [spec.python, "-m", "llama_cpp.server", "--config_file", config_path]


def build_plan(spec: ServeSpec, *, verbose: bool = False) -> LaunchPlan:
    """Everything needed to start and use the server; pure (writes nothing)."""
    base_url = f"http://{_url_host(spec.host)}:{spec.resolved_port}/v1"
    adapter = spec.adapters[0].name if spec.adapters else None
    if spec.backend == "sglang":
        model = spec.served_model_name or spec.model
        return LaunchPlan(sglang_command(spec), base_url, model, adapter,
                          "model_suffix" if adapter else "none", "json_schema", ("/health", "/v1/models"))
    if spec.backend == "vllm":
        model = spec.served_model_name or spec.model
        return LaunchPlan(vllm_command(spec), base_url, model, adapter,
                          "model" if adapter else "none", "json_schema", ("/health", "/v1/models"))
    config_path = spec.config_file or str(Path(tempfile.gettempdir()) / f"freemem-llamacpp-{spec.resolved_port}.json")
    return LaunchPlan(llamacpp_command(spec, config_path), base_url, _llamacpp_base_alias(spec), adapter,
                      "model_suffix" if adapter else "none", "json_object", ("/v1/models",),
                      config=llamacpp_config(spec, verbose=verbose), config_path=config_path)


def _root_url(base_url: str) -> str:
    return base_url[: -len("/v1")] if base_url.endswith("/v1") else base_url


def wait_for_health(
    base_url: str,
    paths: Sequence[str] = ("/v1/models",),
    *,
    timeout: float = 600.0,
    process: subprocess.Popen[Any] | None = None,
    interval: float = 0.5,
) -> None:
    """Poll until every path answers HTTP 200; raise :class:`ServeError` on timeout or if ``process`` exits."""
    root = _root_url(base_url)
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while True:
        if process is not None and process.poll() is not None:
            raise ServeError(f"the server exited with code {process.returncode} before it was ready ({last})")
        pending = []
        for path in paths:
            try:
                with urllib.request.urlopen(root + path, timeout=max(interval, 2.0)) as resp:
                    if resp.status != 200:
                        pending.append(path)
                        last = f"{path}: HTTP {resp.status}"
            except urllib.error.HTTPError as exc:
                pending.append(path)
                last = f"{path}: HTTP {exc.code}"
            except (urllib.error.URLError, OSError) as exc:
                pending.append(path)
                last = f"{path}: {exc}"
        if not pending:
            return
        if time.monotonic() >= deadline:
            raise ServeError(f"the server at {root} was not ready after {timeout:.0f}s ({last})")
        time.sleep(interval)


# -- CLI -------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``freemem serve``'s options to ``parser``."""
    parser.add_argument("--backend", choices=BACKENDS, default="sglang",
                        help="sglang (GPUs, default), vllm (GPUs) or llamacpp (CPUs, GGUF files)")
    parser.add_argument("--model", required=True,
                        help="base model: HF id or directory (sglang, vllm), GGUF file (llamacpp)")
    parser.add_argument("--adapter", action="append", default=[], metavar="NAME=PATH",
                        help="LoRA adapter to serve (repeatable; a bare PATH is named 'free'), "
                             "e.g. free=ldsjmdy/Qwen3-8B-FreeLM-LoRA")
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None,
                        help="listen port (default: sglang 30000, vllm 8000, llamacpp 8080)")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter of the server's own environment (default: this one)")
    parser.add_argument("--tp", type=int, default=1, help="tensor parallel size (sglang, vllm)")
    parser.add_argument("--dp", type=int, default=1, help="data parallel size (sglang, vllm)")
    parser.add_argument("--context-length", type=int, default=None,
                        help="context window (sglang --context-length, vllm --max-model-len, llamacpp n_ctx)")
    parser.add_argument("--max-loras-per-batch", type=int, default=None,
                        help="adapters per batch (sglang; vllm --max-loras)")
    parser.add_argument("--max-lora-rank", type=int, default=None, help="largest LoRA rank (sglang, vllm)")
    parser.add_argument("--served-model-name", default=None, help="request name of the base model")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (llamacpp)")
    parser.add_argument("--n-gpu-layers", type=int, default=0, help="layers offloaded to a GPU (llamacpp)")
    parser.add_argument("--config-file", default=None, help="where to write the llamacpp server config")
    parser.add_argument("--server-args", action="append", default=[], metavar="ARGS",
                        help="extra arguments for the server, shell-quoted (repeatable); for llamacpp, "
                             "llama-cpp-python settings such as '--chat_format chatml', written into its config")
    parser.add_argument("--startup-timeout", type=float, default=900.0,
                        help="seconds to wait for the server to become healthy (default 900)")
    parser.add_argument("--detach", action="store_true",
                        help="return once the server is healthy and leave it running (prints its PID)")
    parser.add_argument("--dry-run", action="store_true", help="print the command (and llamacpp config), run nothing")


def spec_from_args(args: argparse.Namespace) -> ServeSpec:
    """A :class:`ServeSpec` from parsed :func:`add_arguments` options."""
    extra: list[str] = []
    for chunk in args.server_args or []:
        extra += shlex.split(chunk)
    return ServeSpec(
        backend=args.backend,
        model=args.model,
        adapters=tuple(AdapterSpec.parse(a) for a in args.adapter or []),
        host=args.host,
        port=args.port,
        python=args.python,
        tp=args.tp,
        dp=args.dp,
        context_length=args.context_length,
        max_loras_per_batch=args.max_loras_per_batch,
        max_lora_rank=args.max_lora_rank,
        served_model_name=args.served_model_name,
        n_threads=args.threads,
        n_gpu_layers=args.n_gpu_layers,
        config_file=args.config_file,
        extra_args=tuple(extra),
    )


def _print_ready(plan: LaunchPlan, out: TextIO, pid: int) -> None:
    print(f"freemem: server ready (pid {pid}) at {plan.base_url}", file=out)
    print(f"freemem: model={plan.model!r} adapter={plan.adapter!r} adapter_mode={plan.adapter_mode!r}", file=out)
    print(f"freemem: {plan.cleaner_snippet()}", file=out)
    out.flush()


def run(args: argparse.Namespace, *, out: TextIO | None = None) -> int:
    """Run ``freemem serve``; returns the exit code (the server's own, when it runs in the foreground).

    Raises :class:`ConfigError` for invalid options and :class:`ServeError` when the server cannot be started
    or does not become healthy (the server we started is stopped first); the CLI prints them as one line.
    """
    out = out or sys.stdout
    plan = build_plan(spec_from_args(args))
    if args.dry_run:
        print(plan.shell(), file=out)
        if plan.config is not None:
            print(f"# {plan.config_path}:", file=out)
            print(json.dumps(plan.config, indent=2), file=out)
        return 0
    if plan.config is not None and plan.config_path:
        try:
            Path(plan.config_path).parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(plan.config_path, json.dumps(plan.config, indent=2))
        except (OSError, FreememError) as exc:
            raise ServeError(f"cannot write the server config {plan.config_path}: {exc}") from exc
    print(f"freemem: starting {plan.shell()}", file=out)
    out.flush()
    try:
        process = subprocess.Popen(plan.argv, start_new_session=args.detach)
    except OSError as exc:
        raise ServeError(f"cannot start {plan.argv[0]}: {exc}") from exc
    try:
        wait_for_health(plan.base_url, plan.health_paths, timeout=args.startup_timeout, process=process)
    except ServeError:
        _stop(process)
        raise
    except KeyboardInterrupt:
        _stop(process)
        return 130
    _print_ready(plan, out, process.pid)
    if args.detach:
        return 0
    try:
        return process.wait()
    except KeyboardInterrupt:
        _stop(process)
        return 130


def _stop(process: subprocess.Popen[Any], timeout: float = 20.0) -> None:
    """Terminate the server we started (by its PID), killing it if it does not exit in time."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry point: ``python -m freemem.serving.launch ...``."""
    parser = argparse.ArgumentParser(prog="freemem serve", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
