"""What ``freemem serve`` serves: a backend, a base model, adapters and their settings (:class:`ServeSpec`), and
the plan to launch it (:class:`LaunchPlan`: the command, and how a cleaner reaches the server). Pure data."""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass, field
from typing import Any, Literal

from freemem.core.errors import ConfigError

__all__ = ["BACKENDS", "DEFAULT_ADAPTER_NAME", "DEFAULT_PORTS", "AdapterSpec", "Backend", "LaunchPlan", "ServeSpec"]

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
