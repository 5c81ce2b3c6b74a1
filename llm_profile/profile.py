"""Profile a model's operators with PyTorch and write LLMServingSim-format tables.

Builds every layer the simulator prices from the model config with random weights (nothing is
downloaded), emulates tensor parallelism by splitting heads, FFN width and vocabulary, times
each operator at the requested token counts and the attention kernel over (batch, prefill
chunk, KV length) grids, and writes `layers.csv` and `attention.csv` under
`<out>/<hardware>/<org>/<model>/tp<N>/`. Runs on CUDA when present, else on the CPU.

    python -m llm_profile.profile --model meta-llama/Llama-3.2-1B --hardware CPU --tp 1 \
        --tokens pow2 --out llm_profile/perf_models
"""

from __future__ import annotations

import argparse
import csv
import io
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from llm_profile.op_recipes import LAYERNORM_FAMILIES
from llmsim_core.args import OneLineParser, integer, path_arg, print_flag_warnings
from llmsim_core.atomic_write import write_atomic
from llmsim_core.cli_guard import guarded
from llmsim_core.errors import InputError
from llmsim_core.model_config import ModelConfig, load_model_config
from llmsim_core.paths import MODEL_CONFIG_DIR, PERF_MODELS_DIR

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # the [profile] extra is optional
    torch = None

ATTENTION_COLUMNS = [f"time_stats.attn_{k}.{s}" for k in ("prefill", "decode")
                     for s in ("min", "max", "mean", "median", "std")] + [
    "n_embd", "n_q_head", "n_kv_head", "num_tensor_parallel_workers", "max_model_len",
    "batch_size", "prefill_chunk_size", "kv_cache_size", "is_prefill", "attention_backend"]


MAX_TOKENS = 1 << 17  # token counts and KV lengths profiled (a 128 K-token context)


def parse_tokens(text: str) -> list[int]:
    """`pow2` (1, 2, 4 … 2048), `all` (1 … 2048), `A-B`, or a comma list (1 … MAX_TOKENS)."""
    if text == "pow2":
        return [1 << k for k in range(12)]
    if text == "all":
        return list(range(1, 2049))
    values: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        try:
            first, last = integer(lo), integer(hi or lo)
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(f"bad token list {text!r}") from None
        if not 1 <= first <= last <= MAX_TOKENS:
            raise argparse.ArgumentTypeError(f"bad token list {text!r} (counts and ranges in "
                                             f"1..{MAX_TOKENS}, low end first)")
        values.update(range(first, last + 1))
    return sorted(values)


def parse_lengths(text: str) -> list[int]:
    """A comma list of KV lengths (0 … MAX_TOKENS tokens each)."""
    try:
        values = sorted({integer(v) for v in text.split(",")})
    except (argparse.ArgumentTypeError, ValueError):
        raise argparse.ArgumentTypeError(f"bad KV length list {text!r}") from None
    if values[0] < 0 or values[-1] > MAX_TOKENS:
        raise argparse.ArgumentTypeError(f"bad KV length list {text!r} (lengths are in "
                                         f"0..{MAX_TOKENS})")
    return values


DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")
HARDWARE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
MAX_REPEATS = 10_000


def check_flags(args: argparse.Namespace, model: ModelConfig) -> list[int]:
    """The TP degrees to profile, after checking every flag (before any profiling work)."""
    if not HARDWARE_NAME.fullmatch(args.hardware):
        raise InputError(f"--hardware {args.hardware!r} is not a folder name", "command line",
                         "use letters, digits, '.', '_', '+' or '-', e.g. --hardware A6000")
    if not DEVICE.fullmatch(args.device):
        raise InputError(f"unknown --device {args.device!r}", "command line",
                         "use auto, cpu, cuda or cuda:N")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device asks for CUDA but none is available", "command line",
                         "use --device cpu (or auto)")
    if not 1 <= args.repeats <= MAX_REPEATS or not 0 <= args.warmup <= MAX_REPEATS:
        raise InputError(f"--repeats must be in 1..{MAX_REPEATS} and --warmup in "
                         f"0..{MAX_REPEATS}, got {args.repeats} and {args.warmup}",
                         "command line", "pass a small count, e.g. --repeats 5 --warmup 2")
    if args.out.exists() and not args.out.is_dir():
        raise InputError("--out names a file, not a folder", f"--out {args.out}",
                         "give the profile root folder")
    degrees = []
    for text in args.tp.split(","):
        try:
            tp = integer(text)
        except argparse.ArgumentTypeError:
            tp = 0
        if tp < 1 or model.num_heads % tp or model.num_kv_heads % tp and tp % model.num_kv_heads:
            raise InputError(f"--tp {text!r} is not a TP degree of {model.name} ("
                             f"{model.num_heads} heads, {model.num_kv_heads} KV heads)",
                             "command line", "pass a comma list of degrees dividing the heads")
        degrees.append(tp)
    return degrees


class _Timer:
    """Median wall time of a callable, synchronizing CUDA around each call."""

    def __init__(self, device: str, repeats: int, warmup: int) -> None:
        self.cuda = device.startswith("cuda")
        self.repeats, self.warmup = repeats, warmup

    def __call__(self, fn: Callable[[], object]) -> list[float]:
        for _ in range(self.warmup):
            fn()
        samples = []
        for _ in range(self.repeats):
            if self.cuda:
                torch.cuda.synchronize()
            start = time.perf_counter_ns()
            fn()
            if self.cuda:
                torch.cuda.synchronize()
            samples.append(time.perf_counter_ns() - start)
        return samples


def _rms_norm(x, weight):
    # As transformers runs it (the kernels op_recipes counts): statistics in fp32.
    h = x.to(torch.float32)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6)
    return weight * h.to(x.dtype)


def _layer_norm(x, weight):
    return F.layer_norm(x, weight.shape, weight, weight)


def _route(x, gate, top_k):
    """MoE router: logits, softmax in fp32, top-k, renormalised weights (as in Mixtral)."""
    probs = torch.softmax(F.linear(x, gate).to(torch.float32), dim=-1)
    weights, experts = torch.topk(probs, top_k, dim=-1)
    return (weights / weights.sum(-1, keepdim=True)).to(x.dtype), experts


def _rope(q, k, cos, sin):
    def rotate(x):
        half = x.shape[-1] // 2
        return torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return q * cos + rotate(q) * sin, k * cos + rotate(k) * sin


def layer_timings(model: ModelConfig, tp: int, tokens: list[int], device: str, dtype,
                  timer: _Timer) -> list[tuple[str, int, int]]:
    """(layer_name, tokens, median ns) for every operator of one block (plus head/tail)."""
    g = torch.Generator(device="cpu").manual_seed(0)

    def weight(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float32).to(device, dtype) * 0.02

    h, hd = model.hidden_size, model.head_dim
    heads, kv_heads = model.num_heads // tp, max(model.num_kv_heads // tp, 1)
    qd, kvd = heads * hd, kv_heads * hd
    vocab = model.vocab_size // tp
    embed = weight(vocab, h)
    norm = torch.ones(h, device=device, dtype=dtype)
    norm_fn = _layer_norm if model.model_type in LAYERNORM_FAMILIES else _rms_norm
    head_norm = torch.ones(hd, device=device, dtype=dtype)
    ops: dict[str, Callable] = {}
    w = {"q_proj": weight(qd, h), "k_proj": weight(kvd, h), "v_proj": weight(kvd, h),
         "o_proj": weight(h, qd), "lm_head": weight(vocab, h)}
    if model.is_moe:
        w |= {"gate": weight(model.num_experts, h),
              "expert.w1": weight(model.intermediate_size, h),
              "expert.w3": weight(model.intermediate_size, h),
              "expert.w2": weight(h, model.intermediate_size)}
    else:
        ffn = model.intermediate_size // tp
        w |= {"gate_proj": weight(ffn, h), "up_proj": weight(ffn, h), "down_proj": weight(h, ffn)}
    rows = []
    for t in tokens:
        x = weight(t, h)
        ids = torch.randint(0, vocab, (t,), generator=g).to(device)
        q, k = weight(1, heads, t, hd), weight(1, kv_heads, t, hd)
        angle = torch.arange(t, device=device, dtype=torch.float32)[:, None] * \
            torch.linspace(0, 1, hd, device=device)[None, :]
        cos, sin = angle.cos().to(dtype), angle.sin().to(dtype)
        ffn_width = model.intermediate_size if model.is_moe else model.intermediate_size // tp
        gate_out, up_out = weight(t, ffn_width), weight(t, ffn_width)
        ops = {"embedding": lambda ids=ids: F.embedding(ids, embed),
               "input_layernorm": lambda x=x: norm_fn(x, norm),
               "post_layernorm": lambda x=x: norm_fn(x, norm),
               "final_layernorm": lambda x=x: norm_fn(x, norm),
               "rope": lambda q=q, k=k, c=cos, s=sin: _rope(q, k, c, s),
               "attn": lambda q=q, k=k: F.scaled_dot_product_attention(
                   q, k.repeat_interleave(heads // kv_heads, 1),
                   k.repeat_interleave(heads // kv_heads, 1), is_causal=True),
               "act_fn": lambda a=gate_out, b=up_out: F.silu(a) * b}
        for name, matrix in w.items():
            source = gate_out if name in ("down_proj", "expert.w2") else \
                weight(t, qd) if name == "o_proj" else x
            ops[name] = lambda m=matrix, s=source: F.linear(s, m)
        if model.is_moe:
            ops["gate"] = lambda x=x: _route(x, w["gate"], model.experts_per_token)
        if model.qk_norm:
            ops["qk_norm"] = lambda q=q, k=k: (norm_fn(q, head_norm), norm_fn(k, head_norm))
        with torch.inference_mode():
            for name, fn in ops.items():
                rows.append((name, t, int(statistics.median(timer(fn)))))
    return rows


def attention_timings(model: ModelConfig, tp: int, chunks: list[int], kvs: list[int],
                      batches: list[int], device: str, dtype, timer: _Timer) -> list[dict]:
    """attention.csv rows (GPU column layout, times in ms) for prefill and decode grids."""
    g = torch.Generator(device="cpu").manual_seed(1)
    heads, kv_heads = model.num_heads // tp, max(model.num_kv_heads // tp, 1)
    hd, group = model.head_dim, heads // kv_heads

    def tensor(*shape):
        return torch.randn(*shape, generator=g).to(device, dtype)

    def row(prefill: bool, batch: int, chunk: int, kv: int, samples: list[float]) -> dict:
        ms = [s / 1e6 for s in samples]
        kind = "prefill" if prefill else "decode"
        stats = {f"time_stats.attn_{kind}.{k}": v for k, v in (
            ("min", min(ms)), ("max", max(ms)), ("mean", statistics.fmean(ms)),
            ("median", statistics.median(ms)),
            ("std", statistics.pstdev(ms) if len(ms) > 1 else 0.0))}
        return stats | {"n_embd": model.hidden_size, "n_q_head": model.num_heads,
                        "n_kv_head": model.num_kv_heads, "num_tensor_parallel_workers": tp,
                        "max_model_len": model.max_position_embeddings, "batch_size": batch,
                        "prefill_chunk_size": chunk if prefill else 0,
                        "kv_cache_size": kv, "is_prefill": prefill,
                        "attention_backend": "SDPA"}

    rows = []
    with torch.inference_mode():
        for chunk in chunks:
            for kv in kvs:
                q = tensor(1, heads, chunk, hd)
                k = tensor(1, kv_heads, kv + chunk, hd).repeat_interleave(group, 1)
                rows.append(row(True, 1, chunk, kv, timer(
                    lambda q=q, k=k: F.scaled_dot_product_attention(q, k, k))))
        for batch in batches:
            for context in kvs:
                if context == 0:
                    continue
                q = tensor(batch, heads, 1, hd)
                k = tensor(batch, kv_heads, context, hd).repeat_interleave(group, 1)
                # The decode KV axis of attention.csv is the total over the batch.
                rows.append(row(False, batch, 0, batch * context, timer(
                    lambda q=q, k=k: F.scaled_dot_product_attention(q, k, k))))
    return rows


def profile(model: ModelConfig, hardware: str, tp: int, out: Path, tokens: list[int],
            chunks: list[int], kvs: list[int], batches: list[int], device: str, dtype,
            repeats: int, warmup: int) -> Path:
    """Profile one TP degree and write its folder; returns the folder."""
    if model.num_heads % tp or model.intermediate_size % tp or model.vocab_size % tp:
        raise InputError(f"TP {tp} does not divide the model's heads, FFN or vocabulary",
                         f"--tp {tp}", "choose a divisor")
    timer = _Timer(device, repeats, warmup)
    folder = out / hardware / model.name / f"tp{tp}"
    layers = io.StringIO()
    writer = csv.writer(layers, lineterminator="\n")
    writer.writerow(["layer_name", "input", "kv_cache", "tp_size", "latency(ns)"])
    rows = layer_timings(model, tp, tokens, device, dtype, timer)
    for name in dict.fromkeys(r[0] for r in rows):  # grouped by operator, like the originals
        for layer, t, ns in rows:
            if layer == name:
                writer.writerow([layer, t, 0, tp, max(ns, 1)])
    attention = io.StringIO()
    dict_writer = csv.DictWriter(attention, ATTENTION_COLUMNS, lineterminator="\n")
    dict_writer.writeheader()
    dict_writer.writerows(attention_timings(model, tp, chunks, kvs, batches, device, dtype,
                                            timer))
    write_atomic(folder / "layers.csv", layers.getvalue())
    write_atomic(folder / "attention.csv", attention.getvalue())
    return folder


@guarded
def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    p = OneLineParser(prog="python -m llm_profile.profile", description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="<org>/<model> under --model-configs")
    p.add_argument("--hardware", required=True, help="name of the output hardware folder")
    p.add_argument("--tp", default="1", help="comma list of TP degrees to emulate")
    p.add_argument("--tokens", default="all", type=parse_tokens,
                   help="token counts: all (1-2048, the original format), pow2, A-B or a list")
    p.add_argument("--prefill-chunks", default="32,64,128,256,512,1024,2048", type=parse_tokens)
    p.add_argument("--kv-lengths", default="0,64,128,256,512,1024,2048", type=parse_lengths)
    p.add_argument("--batch-sizes", default="1,2,4,8,16,32,64,128,256", type=parse_tokens)
    p.add_argument("--model-configs", type=path_arg, default=MODEL_CONFIG_DIR)
    p.add_argument("--out", type=path_arg, default=PERF_MODELS_DIR)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    p.add_argument("--dtype", default="auto", choices=("auto", "fp16", "bf16", "fp32"),
                   help="auto: fp16 on CUDA, fp32 on the CPU")
    p.add_argument("--repeats", type=integer, default=5)
    p.add_argument("--warmup", type=integer, default=2)
    args = p.parse_args(argv)
    if torch is None:
        print("error: PyTorch is not installed, llm_profile.profile, install the extra: "
              "pip install -e '.[profile]'", file=sys.stderr)
        return 2
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" \
        else args.device
    dtype_name = args.dtype if args.dtype != "auto" else ("fp16" if device != "cpu" else "fp32")
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[dtype_name]
    try:
        model = load_model_config(args.model, args.model_configs)
        for tp in check_flags(args, model):
            start = time.perf_counter()
            folder = profile(model, args.hardware, tp, args.out, args.tokens,
                             args.prefill_chunks, args.kv_lengths, args.batch_sizes, device,
                             dtype, args.repeats, args.warmup)
            print(f"wrote {folder} ({time.perf_counter() - start:.1f} s on {device}, "
                  f"{dtype_name})", file=sys.stderr)
    except InputError as exc:
        print(exc.line(), file=sys.stderr)
        return 2
    print_flag_warnings(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
