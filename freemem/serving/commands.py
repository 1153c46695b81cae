"""The server commands ``freemem serve`` builds, one builder per backend (SGLang, vLLM, llama-cpp-python's server
with its JSON config), and :func:`build_plan`, which picks one; pure functions of a
:class:`~freemem.serving.specs.ServeSpec` (they write nothing), so the commands are testable without a GPU."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from freemem.core.errors import ConfigError
from freemem.serving.specs import LaunchPlan, ServeSpec

__all__ = [
    "LLAMACPP_SERVER_KEYS",
    "build_plan",
    "llamacpp_command",
    "llamacpp_config",
    "llamacpp_settings",
    "sglang_command",
    "vllm_command",
]

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
