"""The current upstream formats: cluster-config schema (num_npus, tp_size), the profile layout
(meta.yaml + dense / per_sequence / attention / moe / skew_fit), vLLM's engine defaults and KV
arithmetic, and their bad-input errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inference_serving.api import simulate
from inference_serving.cluster_config import cluster_from_dict
from inference_serving.memory_model import kv_budget, vllm_kv_budget
from inference_serving.observers import Observer
from inference_serving.vllm_defaults import engine_defaults, resolve_version
from llm_profile.head_profiled import HeadPerfModel
from llm_profile.perf_model import AttentionBatch
from llm_profile.profiled import ProfiledPerfModel
from llmsim_core.model_config import load_model_config
from tests.conftest import DATA, REPO, needs_data
from tests.test_cli_errors import SINGLE, run_main, write_json

GIB = 1 << 30
LLAMA = load_model_config("meta-llama/Llama-3.1-8B", REPO / "model_config")
TRACE = REPO / "dataset" / "example_trace.jsonl"
OPS = ("embedding", "layernorm", "qkv_proj", "rotary_emb", "o_proj", "gate_up_proj", "act_fn",
       "down_proj", "final_layernorm")
META = """profiler_version: 1.0.0
vllm_version: 0.19.0
hardware: A6000
model: meta-llama/Llama-3.1-8B
variant: bf16
tp_degrees: [1]
engine_effective:
  enforce_eager: true
  max_num_seqs: 256
skew_fit:
  enabled: false
"""


def current_instance(**changes: object) -> dict:
    """SINGLE's instance in the current schema."""
    inst = json.loads(json.dumps(SINGLE["nodes"][0]["instances"][0]))
    del inst["npu_num"], inst["npu_group"]
    inst.update({"num_npus": 1, "tp_size": 1, **changes})
    return inst


def current_config(**changes: object) -> dict:
    cfg = json.loads(json.dumps(SINGLE))
    cfg["nodes"][0]["instances"][0] = current_instance(**changes)
    return cfg


def write_profile(root: Path, times: dict[str, float] | None = None) -> Path:
    """A small current-layout profile of Llama-3.1-8B on A6000: every layer at 1 and 4096
    tokens (µs), lm_head/sampler at 1 and 256 sequences, and an attention grid whose time is
    1 + pc/100 + kp/200 + nd·kd/10⁴ µs (exact under multilinear interpolation)."""
    variant = root / "A6000/meta-llama/Llama-3.1-8B/bf16"
    tp1 = variant / "tp1"
    tp1.mkdir(parents=True)
    (variant / "meta.yaml").write_text(META)
    rows = ["layer,tokens,time_us"]
    for op in OPS:
        t = (times or {}).get(op, 10.0)
        rows += [f"{op},1,{t}", f"{op},4096,{t * 100}"]
    (tp1 / "dense.csv").write_text("\n".join(rows) + "\n")
    (tp1 / "per_sequence.csv").write_text("layer,sequences,time_us\nlm_head,1,1000\n"
                                          "lm_head,256,1255\nsampler,1,20\nsampler,256,275\n")
    attn = ["prefill_chunk,kv_prefill,n_decode,kv_decode,time_us"]
    for pc in (0, 2048):
        for kp in (0, 2048):
            for nd in (0, 1, 256):
                for kd in (0, 16, 4096):
                    if (pc == 0 and kp) or (nd == 0 and kd) or (nd and not kd) or \
                            not (pc or nd):
                        continue
                    attn.append(f"{pc},{kp},{nd},{kd},{1 + pc / 100 + kp / 200 + nd * kd / 1e4}")
    (tp1 / "attention.csv").write_text("\n".join(attn) + "\n")
    return variant


# ---------------------------------------------------------------- vLLM defaults


@pytest.mark.parametrize("hardware,mem_gib,usage,seqs,tokens", [
    ("A6000", 40, "api-server", 256, 2048),
    ("RTX4090", 24, "api-server", 256, 2048),
    ("H100", 80, "api-server", 1024, 8192),
    ("H100", 80, "llm", 1024, 16384),
    ("A100-80GB", 80, "api-server", 256, 2048),  # A100s keep the small-device defaults
    ("A6000", 40, "llm", 256, 8192),
    ("TPU-v6e-1", 32, "api-server", 256, 1024),
])
def test_engine_defaults_follow_vllm(hardware, mem_gib, usage, seqs, tokens):
    d = engine_defaults("0.19", hardware, mem_gib * GIB, usage)
    assert (d.max_num_seqs, d.max_num_batched_tokens) == (seqs, tokens)


def test_full_input_reservation_and_version_resolution():
    assert engine_defaults("0.19", "A6000", 40 * GIB).reserve_full_input
    assert not engine_defaults("0.11", "A6000", 40 * GIB).reserve_full_input
    assert resolve_version("auto", "0.19.0") == "0.19"
    assert resolve_version("auto", None) == "0.11"
    assert resolve_version("auto", "0.7.3") == "0.11"
    assert resolve_version("0.19", None) == "0.19"


def test_vllm_kv_arithmetic_gives_the_rtx4090_runs_2588_blocks():
    """meta.json of the real RTX 4090 run: 2,588 blocks of 16 at gpu_memory_utilization 0.9,
    max_num_batched_tokens 2048, max_num_seqs 256; the existing simulator's calibrated
    mem_util 0.833919 of 24 GiB gives the same count."""
    vllm = vllm_kv_budget(LLAMA, 1, 1, 2, 16, 24 * GIB, 0.9, 2048, 256)
    calibrated = kv_budget(LLAMA, 1, 1, 2, 16, 24 * GIB, 0.833919)
    assert vllm.num_blocks == calibrated.num_blocks == 2588
    # The activation peak grows with the token budget: a larger budget leaves fewer blocks.
    assert vllm_kv_budget(LLAMA, 1, 1, 2, 16, 24 * GIB, 0.9, 8192, 256).num_blocks < 2588


def test_current_schema_without_mem_util_takes_vllms_arithmetic():
    cluster = cluster_from_dict(current_config(), "c.json")
    spec = cluster.instances[0]
    assert (spec.npu_num, spec.npu_group, spec.tp, spec.mem_util, spec.vllm_memory) == \
        (1, 1, 1, 0.9, True)
    legacy = cluster_from_dict(json.loads(json.dumps(SINGLE)), "c.json").instances[0]
    assert (legacy.mem_util, legacy.vllm_memory) == (1.0, False)
    two = cluster_from_dict(current_config(num_npus=4, tp_size=2), "c.json").instances[0]
    assert (two.tp, two.pp) == (2, 2)


def test_run_header_names_vllms_choice_and_a_flag_overrides(tmp_path):
    cfg = write_json(tmp_path / "c.json", json.loads(json.dumps(SINGLE)))
    done = run_main(["--cluster-config", str(cfg), "--dataset", str(TRACE), "--num-req", "2"])
    assert "max_num_seqs 256, max_num_batched_tokens 2048 (max_num_seqs and " \
        "max_num_batched_tokens: vLLM 0.11 api-server default for a < 70 GiB GPU)" in done.stdout
    given = run_main(["--cluster-config", str(cfg), "--dataset", str(TRACE), "--num-req", "2",
                      "--max-num-seqs", "7", "--max-num-batched-tokens", "512"])
    assert "max_num_seqs 7, max_num_batched_tokens 512 (given)" in given.stdout
    artifact = run_main(["--cluster-config", str(cfg), "--dataset", str(TRACE), "--num-req",
                         "2", "--compat", "artifact"])
    assert "max_num_seqs 128, max_num_batched_tokens 2048 (max_num_seqs and " \
        "max_num_batched_tokens: former defaults (--compat artifact))" in artifact.stdout
    newer = run_main(["--cluster-config", str(cfg), "--dataset", str(TRACE), "--num-req", "2",
                      "--vllm-version", "0.19", "--max-num-seqs", "64"])
    assert "max_num_seqs 64, max_num_batched_tokens 2048 (max_num_batched_tokens: vLLM 0.19 " \
        "api-server default for a < 70 GiB GPU; whole prompt reserved at admission)" \
        in newer.stdout


class CountPreemptions(Observer):
    """Counts preemptions."""

    def __init__(self) -> None:
        self.count = 0

    def on_request(self, event: str, request: object, time_ns: int, instance: int) -> None:
        self.count += event == "preempted"


def test_full_input_reservation_holds_back_a_prompt_that_cannot_fit():
    """KV of 10 blocks of 16 tokens, two 100-token prompts (7 blocks each), 64 tokens per
    step. vLLM 0.11 admits the second on its 28-token first chunk (2 blocks free enough) and
    preempts it a step later; vLLM 0.19 waits until its whole prompt fits: no preemption."""
    cfg = json.loads(json.dumps(SINGLE))
    block = 2 * LLAMA.kv_dim * LLAMA.num_layers * 2 * 16
    cfg["nodes"][0]["instances"][0]["npu_mem"]["mem_size"] = \
        (16_060_522_496 + 10.5 * block) / GIB
    lines = [{"input_toks": 100, "output_toks": 2, "arrival_time_ns": 0}] * 2
    counts = {}
    for version in ("0.11", "0.19"):
        observer = CountPreemptions()
        simulate(cfg, requests=lines, max_num_batched_tokens=64, vllm_version=version,
                 perf_model="roofline", observers=[observer])
        counts[version] = observer.count
    assert counts == {"0.11": 1, "0.19": 0}


# ---------------------------------------------------------------- the current profile layout


def test_current_layout_lookups(tmp_path):
    model = HeadPerfModel(write_profile(tmp_path), 1, lambda _: None)
    # Fused layers: q_proj carries qkv_proj, k/v/up cost nothing; both norms are `layernorm`.
    assert model.layer_ns("q_proj", 1) == 10_000 and model.layer_ns("k_proj", 1) == 0
    assert model.layer_ns("up_proj", 7) == 0
    assert model.layer_ns("input_layernorm", 1) == model.layer_ns("post_layernorm", 1)
    # Linear between profiled token counts: 10 µs at 1, 1000 µs at 4096.
    assert model.layer_ns("o_proj", 2048) == round(10_000 + (1_000_000 - 10_000) * 2047 / 4095)
    # lm_head is lm_head + sampler at the number of sequences.
    assert model.layer_ns("lm_head", 1) == 1_020_000
    assert model.layer_ns("lm_head", 256) == 1_530_000
    # Attention at grid points and in between (multilinear).
    assert model.attention_ns(AttentionBatch((2048,), (0,), ())) == 21_480
    decode = 1 + 256 * 4096 / 1e4
    assert model.attention_ns(AttentionBatch((), (), (4096,) * 256)) == round(decode * 1000)
    half = AttentionBatch((), (), (2048,) * 256)  # mean context 2048: halfway along kv
    assert model.attention_ns(half) == round((1 + 256 * 2048 / 1e4) * 1000)
    assert model.vllm_version == "0.19.0"


def test_skew_correction_blends_toward_the_longest_context(tmp_path):
    variant = write_profile(tmp_path)
    meta = META.replace("skew_fit:\n  enabled: false\n", """skew_fit:
  enabled: true
  bucket_axes:
    n_bins: [0, 2, 256]
    n_labels: [n<=2, n<=256]
    skew_rate_bins: [-0.01, 0.5, 1.01]
    skew_rate_labels: [sr<=50%, sr>50%]
    kv_big_bins: [0, 4096, 100000]
    kv_big_labels: [kvB<=4k, kvB>4k]
    kp_bins: [-1, 0, 100000]
    kp_labels: [kp=0, kp>0]
  per_tp:
    1:
      alpha_default: 0.0
      bucket_table: tp1/skew_fit.csv
""")
    (variant / "meta.yaml").write_text(meta)
    (variant / "tp1/skew_fit.csv").write_text(
        "pc,n_label,skew_rate_label,kv_big_label,kp_label,alpha,n_samples\n"
        "0,n<=2,sr<=50%,kvB<=4k,kp=0,0.5,4\n")
    model = HeadPerfModel(variant, 1, lambda _: None)
    assert model.skew.enabled
    # Decodes at 1024 and 3072: mean 2048, max 3072, skew rate 0.5 → bucket alpha 0.5:
    # t = t_mean + 0.5 · (t_max − t_mean), each a lookup at 2 decodes.
    t_mean, t_max = model._grid(0, 0, 2, 2048), model._grid(0, 0, 2, 3072)
    assert t_max > t_mean
    batch = AttentionBatch((), (), (1024, 3072))
    assert model.attention_ns(batch) == round(t_mean + 0.5 * (t_max - t_mean))
    uniform = AttentionBatch((), (), (2048, 2048))
    assert model.attention_ns(uniform) == round(model._grid(0, 0, 2, 2048))


def test_same_answers_whichever_layout_holds_the_same_data(tmp_path):
    """The operators both layouts name alike give identical latencies."""
    times = {"o_proj": 12.5, "act_fn": 3.25, "down_proj": 40.0, "embedding": 2.0}
    head = HeadPerfModel(write_profile(tmp_path / "head", times), 1, lambda _: None)
    old = tmp_path / "old/tp1"
    old.mkdir(parents=True)
    rows = ["layer_name,input,kv_cache,tp_size,latency(ns)"]
    for op, t in times.items():
        rows += [f"{op},1,0,1,{int(t * 1000)}", f"{op},4096,0,1,{int(t * 100 * 1000)}"]
    (old / "layers.csv").write_text("\n".join(rows) + "\n")
    # No attention table in the old folder: the fallback prices attention (not used here).
    legacy = ProfiledPerfModel(old, 1, False, lambda _: None, fallback=head)
    for op in times:
        for tokens in (1, 2, 100, 2048, 4096):
            assert head.layer_ns(op, tokens) == pytest.approx(legacy.layer_ns(op, tokens),
                                                              abs=1), (op, tokens)


def test_a_run_on_the_current_layout(tmp_path):
    write_profile(tmp_path / "perf")
    result = simulate(write_json(tmp_path / "c.json", current_config()), TRACE, num_req=3,
                      perf_models=str(tmp_path / "perf"))
    assert len(result.requests) == 3 and all(r.ttft > 0 for r in result.requests)


# ---------------------------------------------------------------- bad input


def case_mixed_schemas(tmp):
    cfg = current_config(npu_num=1)
    return ["--cluster-config", str(write_json(tmp / "c.json", cfg))], "mixes the two schemas"


def case_tp_size_not_dividing(tmp):
    cfg = current_config(num_npus=3, tp_size=2)
    return ["--cluster-config", str(write_json(tmp / "c.json", cfg))], "tp_size 2 must divide"


def case_two_memory_fractions(tmp):
    cfg = current_config()
    cfg["nodes"][0]["instances"][0]["npu_mem"].update(mem_util=0.8, gpu_memory_utilization=0.9)
    return ["--cluster-config", str(write_json(tmp / "c.json", cfg))], "both set"


def case_missing_tp_size(tmp):
    cfg = current_config()
    del cfg["nodes"][0]["instances"][0]["tp_size"]
    return ["--cluster-config", str(write_json(tmp / "c.json", cfg))], "tp_size"


def case_dp_group_not_a_string(tmp):
    cfg = current_config(dp_group=3)
    return ["--cluster-config", str(write_json(tmp / "c.json", cfg))], "dp_group"


def test_a_dp_group_is_named_in_a_warning(tmp_path):
    cfg = write_json(tmp_path / "c.json", current_config(dp_group="A"))
    done = run_main(["--cluster-config", str(cfg), "--dataset", str(TRACE), "--num-req", "2"])
    assert done.returncode == 0, done.stderr
    assert "dp_group A" in done.stderr and "not modelled" in done.stderr


def _profile_case(tmp, rel: str, text: str):
    variant = write_profile(tmp / "perf")
    (variant / rel).write_text(text)
    return ["--perf-models", str(tmp / "perf")]


def case_meta_yaml_unreadable(tmp):
    return _profile_case(tmp, "meta.yaml", "vllm_version 0.19\n"), "meta.yaml line 1"


def case_dense_bad_header(tmp):
    return _profile_case(tmp, "tp1/dense.csv", "layer,input,time_us\nqkv_proj,1,3\n"), \
        "unexpected header"


def case_dense_non_numeric(tmp):
    return _profile_case(tmp, "tp1/dense.csv", "layer,tokens,time_us\nqkv_proj,1,fast\n"), \
        "non-numeric"


def case_attention_negative_time(tmp):
    return _profile_case(tmp, "tp1/attention.csv", "prefill_chunk,kv_prefill,n_decode,"
                         "kv_decode,time_us\n16,0,0,0,-4\n"), "time_us"


def case_per_sequence_missing_sampler(tmp):
    return _profile_case(tmp, "tp1/per_sequence.csv", "layer,sequences,time_us\n"
                         "lm_head,1,3\n"), "sampler"


def case_missing_profiled_tp(tmp):
    write_profile(tmp / "perf")
    cfg = current_config(num_npus=2, tp_size=2)
    return ["--cluster-config", str(write_json(tmp / "c.json", cfg)), "--perf-models",
            str(tmp / "perf")], "no profile for TP degree 2"


CASES = [v for k, v in sorted(globals().items()) if k.startswith("case_")]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__[5:] for c in CASES])
def test_bad_current_format_gives_one_error_line_and_exit_2(tmp_path, case):
    args, expected = case(tmp_path)
    if "--cluster-config" not in args:
        args += ["--cluster-config", str(write_json(tmp_path / "cc.json", current_config()))]
    done = run_main([*args, "--dataset", str(TRACE), "--num-req", "2"])
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines


@needs_data
def test_the_bench_config_reads_unchanged_and_gives_2588_blocks():
    raw = json.loads((DATA / "vllm_bench/RTX4090/Llama-3.1-8B/config.json").read_text())
    spec = cluster_from_dict(raw, "config.json").instances[0]
    assert (spec.tp, spec.mem_util, spec.vllm_memory) == (1, 0.833919, False)
    budget = kv_budget(LLAMA, spec.tp, spec.pp, 2, 16, spec.npu_mem.size_bytes, spec.mem_util)
    assert budget.num_blocks == 2588
    meta = json.loads((DATA / "vllm_bench/RTX4090/Llama-3.1-8B/vllm/meta.json").read_text())
    assert meta["kv_cache"]["num_gpu_blocks"] == budget.num_blocks


@pytest.mark.parametrize(("flags", "warned"), [
    ([], True),  # unset limits follow the artifact's vLLM: said once
    (["--vllm-version", "0.19"], False),
    (["--max-num-seqs", "8", "--max-num-batched-tokens", "512"], False),  # nothing defaulted
])
def test_a_profile_vllm_without_known_defaults_is_named_once(tmp_path, flags, warned):
    variant = write_profile(tmp_path / "perf")
    (variant / "meta.yaml").write_text(META.replace("0.19.0", "0.7.3"))
    done = run_main(["--cluster-config", str(write_json(tmp_path / "c.json", SINGLE)),
                     "--dataset", str(TRACE), "--num-req", "2", "--quiet",
                     "--perf-models", str(tmp_path / "perf"), *flags])
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "no known engine defaults" in line]
    assert len(lines) == (1 if warned else 0), done.stderr
    if warned:
        assert lines[0].startswith("warning: the profile's vLLM 0.7.3") and "0.11" in lines[0]
