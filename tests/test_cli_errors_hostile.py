"""Hostile input, second round: special files and odd paths as outputs, inputs an output could
overwrite (CUSTOM class sources, the ASTRA-Sim binary), empty flags, misbehaving outside binaries
and CUSTOM classes, unbounded numbers, the trace generator, sweep and compare CLIs. Each case:
one `error:` line, exit status 2, nothing written, no input touched.

Entry points run in process (each case is a `main(argv)` call), as in
tests/test_cli_errors_features.py."""

from __future__ import annotations

import errno
import gzip
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from dataset import generate
from evaluation import compare, figure, sweep
from inference_serving import cli
from inference_serving.outputs import RequestCsv
from llm_profile import attention_predictor, calibrate
from tests.conftest import REPO
from tests.test_cli_errors import SINGLE, write_json
from tests.test_cli_errors_features import (
    BENCH,
    HBM2,
    META_JSON,
    POWER_CLI,
    SPEC,
    TRACE,
    _digests,
    bench_folder,
    copy,
    pim,
    run,
    samples,
    simulate_args,
    sweep_args,
)

MULTI = json.loads((REPO / "cluster_config/single_node_multi_instance.json").read_text())
MOE = json.loads((REPO / "cluster_config/single_node_moe_instance.json").read_text())
LLAMA = json.loads((REPO / "model_config/meta-llama/Llama-3.1-8B.json").read_text())
MAIN, GENERATE, SWEEP, COMPARE = cli.main, generate.main, sweep.main, compare.main
FIGURE, CALIBRATE, PREDICTOR = figure.main, calibrate.main, attention_predictor.main


def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def output_at(tmp: Path, path: object, *args: object, cfg: dict | None = None) -> list[str]:
    """A valid run whose --output is `path`."""
    argv = simulate_args(tmp, *args, cfg=cfg)
    argv[argv.index("--output") + 1] = str(path)
    return argv


def symlink_loop(tmp: Path) -> Path:
    (tmp / "a.csv").symlink_to(tmp / "b.csv")
    (tmp / "b.csv").symlink_to(tmp / "a.csv")
    return tmp / "a.csv"


def plugin(tmp: Path, source: str) -> Path:
    """A package `plug` with module `m` holding `source`, importable from `tmp`."""
    (tmp / "plug").mkdir()
    (tmp / "plug" / "__init__.py").write_text("")
    (tmp / "plug" / "m.py").write_text(source)
    return tmp / "plug" / "m.py"


@pytest.fixture(autouse=True)
def _import_path(tmp_path, monkeypatch):
    """CUSTOM classes of a case live under its tmp_path; each case gets fresh modules."""
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m == "plug" or m.startswith("plug.")]:
        monkeypatch.delitem(sys.modules, name)


def plugin_args(tmp: Path, source: str) -> list[str]:
    """Writes the plugin module plug.m holding `source`; no arguments of its own."""
    plugin(tmp, source)
    return []


def custom(tmp: Path, kind: str, source: str, *args: object, cfg: dict | None = None) -> list[str]:
    plugin(tmp, source)
    policy, flag = {"router": ("--request-routing-policy", "--custom-router"),
                    "scheduler": ("--scheduler", "--custom-scheduler"),
                    "perf": ("--perf-model", "--custom-perf-model")}[kind]
    return simulate_args(tmp, policy, "CUSTOM", flag, "plug.m:X", *args, cfg=cfg)


def binary(tmp: Path, body: str, *args: object) -> list[str]:
    """--network-backend external with a shell script as the ASTRA-Sim binary."""
    path = tmp / "astra"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return simulate_args(tmp, "--network-backend", "external", "--astra-sim-bin", path, *args)


def model_with(tmp: Path, **changes: object) -> list[str]:
    (tmp / "models" / "acme").mkdir(parents=True)
    write_json(tmp / "models" / "acme" / "Tiny.json", {**LLAMA, **changes})
    cfg = copy(SINGLE)
    cfg["nodes"][0]["instances"][0]["model_name"] = "acme/Tiny"
    return simulate_args(tmp, "--model-configs", tmp / "models", cfg=cfg)


def gen(tmp: Path, *args: object) -> list[str]:
    base = {"--num-req": "3", "--rate": "1"}
    flags = [str(a) for a in args]
    for flag, value in base.items():
        if flag not in flags:
            flags += [flag, value]
    if "--out" not in flags:
        flags += ["--out", str(tmp / "t.jsonl")]
    return flags


def compare_runs(tmp: Path, data: bytes) -> list[str]:
    for name in ("a.csv", "a.txt"):
        (tmp / name).write_bytes(data)
    (tmp / "b.csv").write_text("instance id,request id\n0,0\n")
    (tmp / "b.txt").write_text("")
    return [str(tmp / "a"), str(tmp / "b")]


ROUTER_BASE = "from examples.custom_router import ShortestQueue\n"
PERF_BASE = "from examples.custom_perf_model import OutsideCostModel\n"
SCHED_BASE = "from examples.custom_scheduler import CappedBatchScheduler\n"
CASYS_FIRST_POLL = "echo 'sys[0] iteration 0 finished, 5 cycles'; echo Waiting; read x; "
# name: (entry, argv maker, expected text of the error line)
CASES: dict[str, tuple[Callable, Callable[[Path], list[str]], str]] = {
    # Outputs that are not regular files would be replaced by the renamed result.
    "output_is_a_fifo": (MAIN, lambda t: output_at(t, fifo(t / "o.csv")),
                         "--output names a device, FIFO or socket"),
    "metrics_is_a_symlink_to_a_fifo": (MAIN, lambda t: [
        *simulate_args(t), "--metrics-json", str(_link(t / "m.json", fifo(t / "pipe")))],
        "--metrics-json names a device, FIFO or socket"),
    "output_symlink_loop": (MAIN, lambda t: output_at(t, symlink_loop(t)),
                            "cannot use the path (Symlink loop"),
    "output_name_too_long": (MAIN, lambda t: output_at(t, t / ("x" * 300 + ".csv")),
                             "cannot use the path (File name too long)"),
    # Plot files and export folders are outputs too: never an input, another output or a
    # folder of the user's.
    "plot_file_is_the_dataset": (MAIN, lambda t: simulate_args(
        t, "--plot-dir", t, dataset=_trace_named(t / "throughput.png")),
        "--plot-dir throughput.png is an input of this run"),
    "plot_file_is_the_output": (MAIN, lambda t: output_at(t, t / "requests.png", "--plot-dir", t),
                                "--output and --plot-dir requests.png would write the same file"),
    "plot_file_is_a_fifo": (MAIN, lambda t: simulate_args(
        t, "--plot-dir", fifo(t / "memory.png").parent),
        "--plot-dir memory.png names a device, FIFO or socket"),
    "export_folder_holds_an_old_export": (MAIN, lambda t: simulate_args(
        t, "--export-chakra", _old_export(t / "x")),
        "the folder already holds batch folders of an export (instance0_batch0)"),
    # Inputs beyond the config and trace: a CUSTOM class's source, the ASTRA-Sim binary.
    "metrics_overwrites_the_custom_router": (MAIN, lambda t: custom(
        t, "router", ROUTER_BASE + "X = ShortestQueue\n", "--metrics-json", t / "plug" / "m.py",
        cfg=MULTI), "--metrics-json is an input of this run"),
    "throughput_overwrites_the_astra_binary": (MAIN, lambda t: [
        *binary(t, "exit 1"), "--throughput-output", str(t / "astra")],
        "--throughput-output is an input of this run"),
    # An empty text flag was taken as unset (the output silently skipped).
    "empty_output_flag": (MAIN, lambda t: output_at(t, ""), "--output is empty"),
    "empty_export_chakra": (MAIN, lambda t: simulate_args(t, "--export-chakra", ""),
                            "--export-chakra is empty"),
    "perf_models_is_a_file": (MAIN, lambda t: simulate_args(t, "--perf-models", _plain(t)),
                              "--perf-models names no folder"),
    # Unbounded numbers.
    "max_num_seqs_beyond_32_bits": (MAIN, lambda t: simulate_args(t, "--max-num-seqs", 2**40),
                                    "--max-num-seqs must be at most 2147483647"),
    "seed_beyond_64_bits": (MAIN, lambda t: simulate_args(t, "--seed", 2**64),
                            "--seed must be at most 9223372036854775807"),
    "head_dim_zero": (MAIN, lambda t: model_with(t, head_dim=0), "'head_dim' must be an integer"),
    "dataset_field_misspelt": (MAIN, lambda t: simulate_args(t, dataset=_trace_text(
        t, '{"input_toks": 2, "output_toks": 2, "arrival_time_ns": 0, '
        '"input_tok_idz": [1, 2]}\n')), "field 'input_tok_idz' looks like a misspelt "
        "'input_tok_ids' (which is missing)"),
    "instance_max_num_seqs_and_max_batch_disagree": (MAIN, lambda t: simulate_args(
        t, cfg=_instance_with(max_num_seqs=1, max_batch=64)),
        "max_num_seqs 1 and max_batch 64 name the same limit and disagree"),
    "pd_instances_of_different_models": (MAIN, lambda t: simulate_args(t, cfg=_pd_two_models()),
                                         "the prefill and decode instances serve different"),
    "model_top_k_beyond_the_experts": (MAIN, lambda t: model_with(
        t, num_local_experts=16, num_experts_per_tok=32),
        "num_experts_per_tok 32 exceeds the 16 experts"),
    "model_two_expert_counts": (MAIN, lambda t: model_with(t, num_local_experts=16,
                                                            num_experts=4),
                                "'num_local_experts' (16) and 'num_experts' (4) name the same"),
    "model_two_ffn_widths": (MAIN, lambda t: model_with(t, ffn_dim=999),
                             "'intermediate_size' (14336) and 'ffn_dim' (999) name the same"),
    "model_type_not_a_string": (MAIN, lambda t: model_with(t, model_type=["llama"]),
                                "'model_type' must be a string, got ['llama']"),
    "pim_number_with_underscore": (MAIN, lambda t: pim(t, re.sub(
        r"(?m)^rows *= *\d+", "rows = 32_768", HBM2)), "'rows' must be an integer"),
    "pim_key_differs_in_case": (MAIN, lambda t: pim(t, HBM2 + "IDLE_POWER = 5\n"),
                                "key 'IDLE_POWER' on line"),
    # Outside binaries (casys protocol and upstream) that misbehave.
    "casys_binary_exits": (MAIN, lambda t: binary(t, "exit 1"),
                           "the ASTRA-Sim binary broke the casys protocol"),
    "casys_binary_not_executable_format": (MAIN, lambda t: _garbage_binary(t, binary(t, "")),
                                           "the ASTRA-Sim binary could not be started"),
    "casys_unknown_npu": (MAIN, lambda t: binary(
        t, "echo 'sys[99] iteration 0 finished, 5 cycles'; echo Waiting; read x"),
        "it reported NPU 99, which starts or ends no instance"),
    "casys_clock_beyond_any_run": (MAIN, lambda t: binary(
        t, CASYS_FIRST_POLL + "echo 'sys[0] iteration 1 finished, " + "9" * 26 + " cycles'; "
        "echo Waiting; read x"), "beyond 2e+15 ns"),
    "casys_binary_never_answers": (MAIN, lambda t: binary(
        t, "sleep 1000", "--astra-sim-timeout", "0.5"),
        "the ASTRA-Sim binary gave no answer within 0.5 s of wall time"),
    "casys_binary_hangs_mid_run": (MAIN, lambda t: binary(
        t, CASYS_FIRST_POLL + "sleep 1000", "--astra-sim-timeout", "0.5"),
        "the ASTRA-Sim binary gave no answer within 0.5 s of wall time"),
    "upstream_binary_never_answers": (MAIN, lambda t: binary(
        t, "sleep 1000", "--astra-sim-dialect", "upstream", "--astra-sim-timeout", "0.5"),
        "the ASTRA-Sim binary gave no answer within 0.5 s of wall time"),
    "astra_sim_timeout_zero": (MAIN, lambda t: binary(t, "exit 1", "--astra-sim-timeout", "0"),
                               "'--astra-sim-timeout' must be a number in (0, 86400] s"),
    "astra_sim_timeout_nan": (MAIN, lambda t: binary(t, "exit 1", "--astra-sim-timeout", "nan"),
                              "'--astra-sim-timeout' must be a number in (0, 86400] s"),
    "astra_sim_timeout_endless": (MAIN, lambda t: binary(t, "exit 1", "--astra-sim-timeout",
                                                         "inf"),
                                  "'--astra-sim-timeout' must be a number in (0, 86400] s"),
    "astra_sim_timeout_without_a_binary": (MAIN, lambda t: simulate_args(
        t, "--astra-sim-timeout", "5"),
        "--astra-sim-timeout has no effect without --network-backend external"),
    "upstream_iteration_of_centuries": (MAIN, lambda t: binary(
        t, "echo 'sys[0] finished, " + "9" * 29 + " cycles'", "--astra-sim-dialect", "upstream",
        "--pricer", "external"), "cycles for one iteration, above 1e+12 ns"),
    # CUSTOM classes that misbehave.
    "custom_router_answer_that_cannot_be_shown": (MAIN, lambda t: custom(
        t, "router", ROUTER_BASE + "class Odd:\n    def __repr__(self):\n        raise "
        "RuntimeError\nclass X(ShortestQueue):\n    def route(self, *a):\n        return Odd()\n",
        cfg=MULTI), "X.route returned <a Odd that cannot be printed> for request 0"),
    "custom_router_makes_a_count_a_float": (MAIN, lambda t: custom(
        t, "router", ROUTER_BASE + "class X(ShortestQueue):\n    def route(self, request, c):\n"
        "        request.prompt = float(request.prompt)\n        return c[0]\n", cfg=MULTI),
        "X.route changed field 'prompt' of request 0 from 89 to 89.0"),
    "custom_router_makes_a_count_an_array": (MAIN, lambda t: custom(
        t, "router", ROUTER_BASE + "import numpy as np\nclass X(ShortestQueue):\n"
        "    def route(self, request, c):\n        request.prompt = np.array([1, 2])\n"
        "        return c[0]\n", cfg=MULTI), "X.route changed field 'prompt' of request 0"),
    "custom_perf_latency_whose_comparison_fails": (MAIN, lambda t: custom(
        t, "perf", PERF_BASE + "class N(int):\n    def __lt__(self, other):\n        raise "
        "RuntimeError\n    def __int__(self):\n        raise RuntimeError\n"
        "class X(OutsideCostModel):\n    def layer_ns(self, *a):\n        return N(5)\n"),
        "X.layer_ns('embedding', 1) returned 5"),
    "custom_perf_name_that_raises": (MAIN, lambda t: custom(
        t, "perf", PERF_BASE + "class X(OutsideCostModel):\n    @property\n    def name(self):\n"
        "        raise RuntimeError('name boom')\n"), "X.name raised RuntimeError: name boom"),
    "custom_expert_router_ragged_counts": (MAIN, lambda t: [*simulate_args(
        t, "--expert-routing-policy", "CUSTOM", "--custom-expert-router", "plug.m:X",
        cfg=MOE), *plugin_args(t, "class X:\n    def route(self, tokens, experts, k, layers, "
                               "seed):\n        return [[tokens * k, [0]] + [0] * (experts - 2)"
                               "] * layers\n")],
        "X.route gave layer 0 counts that are not an array of"),
    "custom_scheduler_shortens_the_answers": (MAIN, lambda t: custom(
        t, "scheduler", SCHED_BASE + "class X(CappedBatchScheduler):\n"
        "    def schedule(self, now):\n        batch = super().schedule(now)\n"
        "        for r in batch.requests if batch else ():\n            r.output = 1\n"
        "        return batch\n"), "X.update changed the id, prompt, output or arrival of a "
        "request to (0, "),
    "custom_scheduler_samples_negative_tokens": (MAIN, lambda t: custom(
        t, "scheduler", SCHED_BASE + "class X(CappedBatchScheduler):\n"
        "    def update(self, batch, now):\n        done = super().update(batch, now)\n"
        "        batch.sampled = -5\n        return done\n"),
        "X.update set the batch's sampled tokens to -5, outside 0..1"),
    "custom_scheduler_raises_its_own_oserror": (MAIN, lambda t: custom(
        t, "scheduler", SCHED_BASE + "class X(CappedBatchScheduler):\n"
        "    def schedule(self, now):\n        raise FileNotFoundError(2, 'No such file', "
        "'/my/cache')\n"), "the run failed with the CUSTOM scheduler (FileNotFoundError"),
    "custom_perf_name_with_a_newline": (MAIN, lambda t: custom(
        t, "perf", PERF_BASE + "class X(OutsideCostModel):\n    name = 'x\\nerror: fake'\n"),
        "X.name is 'x\\nerror: fake', not one printable line of text"),
    "custom_perf_name_not_text": (MAIN, lambda t: custom(
        t, "perf", PERF_BASE + "class X(OutsideCostModel):\n    attention_source = ['x']\n"),
        "X.attention_source is ['x'], not one printable line of text"),
    "custom_perf_latency_of_centuries": (MAIN, lambda t: custom(
        t, "perf", PERF_BASE + "class X(OutsideCostModel):\n    def layer_ns(self, *a):\n"
        "        return 10**30\n"), "ns, above 1e+12 ns"),
    "custom_scheduler_returns_no_batch": (MAIN, lambda t: custom(
        t, "scheduler", SCHED_BASE + "class X(CappedBatchScheduler):\n"
        "    def schedule(self, now):\n        return 42\n"),
        "X.schedule returned 42 (int), not a Batch or None"),
    "custom_router_calls_sys_exit": (MAIN, lambda t: custom(
        t, "router", ROUTER_BASE + "import sys\nclass X(ShortestQueue):\n"
        "    def route(self, *a):\n        sys.exit(3)\n", cfg=MULTI),
        "X.route raised SystemExit: 3"),
    # User code raising what is not an Exception, or an exception that cannot be printed.
    "custom_router_raises_a_base_exception": (MAIN, lambda t: custom(
        t, "router", ROUTER_BASE + "class Stop(BaseException):\n    pass\n"
        "class X(ShortestQueue):\n    def route(self, *a):\n        raise Stop('halt')\n",
        cfg=MULTI), "X.route raised Stop: halt at "),
    "custom_router_raises_keyboard_interrupt": (MAIN, lambda t: custom(
        t, "router", ROUTER_BASE + "class X(ShortestQueue):\n    def route(self, *a):\n"
        "        raise KeyboardInterrupt\n", cfg=MULTI), "X.route raised KeyboardInterrupt at "),
    "custom_router_raises_keyboard_interrupt_with_a_signal_number": (MAIN, lambda t: custom(
        t, "router", ROUTER_BASE + "class X(ShortestQueue):\n    def route(self, *a):\n"
        "        raise KeyboardInterrupt(15)\n", cfg=MULTI),
        "X.route raised KeyboardInterrupt: 15 at "),
    "custom_router_import_raises_generator_exit": (MAIN, lambda t: custom(
        t, "router", "raise GeneratorExit\n", cfg=MULTI), "(GeneratorExit), --custom-router"),
    "custom_router_exception_message_fails": (MAIN, lambda t: custom(
        t, "router", ROUTER_BASE + "class Odd(Exception):\n    def __str__(self):\n"
        "        raise RuntimeError\nclass X(ShortestQueue):\n    def route(self, *a):\n"
        "        raise Odd\n", cfg=MULTI),
        "X.route raised Odd: <a message that cannot be printed> at "),
    "custom_perf_raises_a_base_exception": (MAIN, lambda t: custom(
        t, "perf", PERF_BASE + "class X(OutsideCostModel):\n    def layer_ns(self, *a):\n"
        "        raise BaseException\n"), "X.layer_ns raised BaseException at "),
    "custom_scheduler_raises_keyboard_interrupt": (MAIN, lambda t: custom(
        t, "scheduler", SCHED_BASE + "class X(CappedBatchScheduler):\n"
        "    def schedule(self, now):\n        raise KeyboardInterrupt\n"),
        "the run failed with the CUSTOM scheduler (KeyboardInterrupt at "),
    # The side tools: outputs that are devices, inside the inputs or empty; bounds.
    "power_output_is_a_fifo": (POWER_CLI, lambda t: [
        "--hardware", "A6000", "--samples", str(samples(t)), "--output",
        str(fifo(t / "power.json"))],
        "the output names a device, FIFO or socket"),
    "figure_out_inside_the_data": (FIGURE, lambda t: [
        "9", "--data", str(_data_copy(t)), "--out", str(t / "data" / "reference_sim"), "--no-plot"],
        "--out overlaps the input folder"),
    "figure_broken_reference_table_before_any_run": (FIGURE, lambda t: [
        "9", "--data", str(_data_copy(t, {"figure_9/parsed/SD_throughput.tsv": "a\tb\n1\n"})),
        "--out", str(t / "out"), "--no-plot"], "row 2 has 1 cells, the header 2"),
    "figure_out_empty": (FIGURE, lambda t: ["9", "--out", "", "--no-plot"],
                         "argument --out: empty path"),
    "calibrate_out_empty": (CALIBRATE, lambda t: ["--perf-models", str(t), "--out", ""],
                            "argument --out: empty path"),
    "attention_predictor_max_len_zero": (PREDICTOR, lambda t: [
        "--profile", str(t), "--max-len", "0"], "--max-len must be a multiple of 32 in 32..13"),
    "attention_predictor_max_len_off_grid": (PREDICTOR, lambda t: [
        "--profile", str(t), "--max-len", "33"], "--max-len must be a multiple of 32"),
    "attention_predictor_seed_negative": (PREDICTOR, lambda t: [
        "--profile", str(t), "--seed", "-1"], "--seed must be in 0..4294967295"),
    # Numbers in Python's looser syntax (`1_000`, non-ASCII digits, padding).
    "max_num_seqs_with_underscores": (MAIN, lambda t: simulate_args(t, "--max-num-seqs", "1_000"),
                                      "invalid integer '1_000'"),
    "num_req_in_arabic_indic_digits": (MAIN, lambda t: simulate_args(t, "--num-req", "\u0663"),
                                       "invalid --num-req value"),
    "log_interval_padded": (MAIN, lambda t: simulate_args(t, "--log-interval", " 0.5"),
                            "invalid number ' 0.5'"),
    "generate_ids_beyond_any_context": (GENERATE, lambda t: gen(
        t, "--input-dist", "fixed:1000000000", "--output-dist", "fixed:1", "--max-total",
        "2000000000"), "request 0 would hold 1000000001 token ids, more than 1048576"),
    "generate_ids_beyond_any_context_into_new_folders": (GENERATE, lambda t: gen(
        t, "--input-dist", "fixed:1000000000", "--output-dist", "fixed:1", "--max-total",
        "2000000000", "--out", t / "new" / "deeper" / "t.jsonl"), "would hold 1000000001 token"),
    "generate_out_with_a_trailing_slash": (GENERATE, lambda t: gen(t, "--out", f"{t}/t.jsonl/"),
                                           "ends in a separator, which names a folder"),
    "metrics_json_over_python_source": (MAIN, lambda t: simulate_args(
        t, "--metrics-json", _file_at(t / "helper.py", "x = 1\n")),
        "--metrics-json names existing Python source"),
    "generate_out_over_python_source": (GENERATE, lambda t: gen(
        t, "--out", _file_at(t / "main.py", "print()\n")), "--out names existing Python source"),
    "output_names_the_plot_folder": (MAIN, lambda t: simulate_args(
        t, "--plot-dir", t / "out.csv"), "--output names the --plot-dir folder"),
    "metrics_json_inside_the_export_folder": (MAIN, lambda t: simulate_args(
        t, "--export-chakra", t / "et", "--metrics-json", t / "et" / "instance0_batch0" / "m.json"),
        "--metrics-json lies inside the --export-chakra folder"),
    "plot_dir_inside_the_model_configs": (MAIN, lambda t: simulate_args(
        t, "--model-configs", _mkdir_at(t / "models"), "--plot-dir", t / "models" / "plots"),
        "--plot-dir lies inside an input folder"),
    "output_with_a_trailing_slash": (MAIN, lambda t: output_at(t, f"{t}/out.csv/"),
                                     "--output ends in a separator, which names a folder"),
    "metrics_json_with_a_trailing_slash": (MAIN, lambda t: simulate_args(
        t, "--metrics-json", f"{t}/m.json/"), "--metrics-json ends in a separator"),
    "power_output_with_a_trailing_slash": (POWER_CLI, lambda t: [
        "--hardware", "A6000", "--samples", str(samples(t)), "--output", f"{t}/power.json/"],
        "ends in a separator, which names a folder"),
    "generate_vocab_size_without_ids": (GENERATE, lambda t: gen(
        t, "--vocab-size", "32000", "--no-token-ids"),
        "--vocab-size has no effect with --no-token-ids"),
    "generate_num_req_with_underscores": (GENERATE, lambda t: gen(t, "--num-req", "1_0"),
                                          "not an integer: '1_0'"),
    "generate_rate_in_arabic_indic_digits": (GENERATE, lambda t: gen(t, "--rate", "\u0663"),
                                             "not a number"),
    "generate_fixed_length_with_underscores": (GENERATE, lambda t: gen(t, "--input-dist",
                                                                       "fixed:1_0"),
                                               "bad length distribution 'fixed:1_0'"),
    # The trace generator.
    "generate_rate_nan": (GENERATE, lambda t: gen(t, "--rate", "nan"), "'--rate' must be"),
    "generate_rate_underflows": (GENERATE, lambda t: gen(t, "--rate", "1e-300"),
                                 "'--rate' must be"),
    "generate_num_req_endless": (GENERATE, lambda t: gen(t, "--num-req", 10**30),
                                 "'--num-req' must be an integer in [1, 10000000]"),
    "generate_cv_underflows": (GENERATE, lambda t: gen(t, "--arrival", "gamma", "--cv", "1e-300"),
                               "'--cv' must be"),
    "generate_vocab_beyond_32_bits": (GENERATE, lambda t: gen(t, "--vocab-size", 2**40),
                                      "'--vocab-size' must be"),
    "generate_arrivals_beyond_the_window": (GENERATE, lambda t: gen(t, "--rate", "1e-6",
                                                                    "--num-req", 50),
                                            "arrives after 1e+15 ns"),
    "generate_out_is_a_fifo": (GENERATE, lambda t: gen(t, "--out", fifo(t / "t.jsonl")),
                               "--out names a device, FIFO or socket"),
    "generate_out_empty": (GENERATE, lambda t: gen(t, "--out", ""), "argument --out: empty path"),
    # Sweep and compare.
    "compare_latency_nan": (COMPARE, lambda t: compare_runs(
        t, b"instance id,request id,latency\n0,0,nan\n"), "latency is 'nan', not a whole number"),
    "compare_itl_not_a_list": (COMPARE, lambda t: compare_runs(
        t, b"instance id,request id,ITL\n0,0,[x22954731]\n"), "ITL is '[x22954731]', not a list"),
    "sweep_cv_underflows": (SWEEP, lambda t: sweep_args(t, SPEC.replace(
        'output: "fixed:4"', 'output: "fixed:4", arrival: gamma, cv: 1.0e-300')),
        "'workload.cv' must be"),
    "sweep_rate_underflows": (SWEEP, lambda t: sweep_args(t, SPEC.replace(
        "rates: [5]", "rates: [1.0e-300]")), "'rates[0]' must be"),
    "sweep_yaml_alias_bomb": (SWEEP, lambda t: sweep_args(t, SPEC.replace(
        "rates: [5]", "rates: [[&a [x, x, x], &b [*a, *a, *a], [*b, *b, *b]], 5]")),
        "YAML aliases (*name) are not allowed in a sweep spec"),
    "sweep_pd_in_superscript_digits": (SWEEP, lambda t: sweep_args(t, SPEC.replace(
        "hardware: A6000}", "hardware: A6000, pd: \"\u00b2:1\"}")),
        "'clusters[0].pd' must be 'P:D'"),
    "sweep_rate_repeated_as_float": (SWEEP, lambda t: sweep_args(t, SPEC.replace(
        "rates: [5]", "rates: [5, 5.0]")), "'rates' repeats a value"),
    "sweep_rate_spreading_arrivals_too_far": (SWEEP, lambda t: sweep_args(t, SPEC.replace(
        "rates: [5]", "rates: [1.0e-9]")), "'rates[0]' 1e-09 req/s spreads 2 requests over"),
    "bench_timeseries_nan": (BENCH, lambda t: bench_real(
        t, REQUEST_LINE % (0.0, 0.5, 1.0, 4) * 2, "gen_throughput,running,waiting\nnan,1,0\n"),
        "unreadable time series (needs finite, non-negative"),
    "bench_timestamps_out_of_order": (BENCH, lambda t: bench_real(
        t, REQUEST_LINE % (0.0, 0.5, -5.0, 4), "gen_throughput,running,waiting\n1,1,0\n"),
        "line 1 needs epoch-second timestamps in [0, 1e+11] with queued_ts <= first_token_ts <= "
        "last_token_ts"),
    "bench_output_tokens_true": (BENCH, lambda t: bench_real(
        t, REQUEST_LINE.replace("%d", "true") % (0.0, 0.5, 1.0),
        "gen_throughput,running,waiting\n1,1,0\n"), "'output_toks' must be an integer"),
    "sweep_spec_is_a_fifo": (SWEEP, lambda t: [str(fifo(t / "s.yaml")), "--out",
                                               str(t / "rows.csv"), "--no-plot"],
                             "the sweep spec is not a regular file"),
    "compare_csv_not_utf8": (COMPARE, lambda t: compare_runs(t, b"\xff\xfe\x00"),
                             "not UTF-8 text"),
    "compare_short_row": (COMPARE, lambda t: csv_pair(t, "instance id,request id\n0\n"),
                          "line 2 has 1 field(s), the header 2"),
    "compare_id_not_a_number": (COMPARE, lambda t: csv_pair(
        t, "instance id,request id\n0,\u00b2\n"), "line 2 has request id '\u00b2', not a whole"),
    "compare_duplicate_id": (COMPARE, lambda t: csv_pair(
        t, "instance id,request id\n0,0\n1,0\n"), "request id 0 appears twice"),
    "compare_header_only": (COMPARE, lambda t: csv_pair(t, "instance id,request id\n"),
                            "holds no requests (a header only)"),
    "compare_truncated_gzip": (COMPARE, lambda t: _truncated_gzip(t),
                               "not a readable gzip of UTF-8 text"),
    "compare_empty_stem": (COMPARE, lambda t: ["", str(t / "b")], "not a run stem"),
    "compare_logs_without_summary": (COMPARE, lambda t: _logs(t, "just some text\n"),
                                     "not a run's console log (no final summary in it)"),
}


REQUEST_LINE = ('{"queued_ts": %s, "first_token_ts": %s, "last_token_ts": %s, '
                '"output_toks": %d}\n')


def bench_real(tmp: Path, requests: str, timeseries: str) -> list[str]:
    """A bench example whose real vLLM side holds `requests` and `timeseries`."""
    argv = bench_folder(tmp, META_JSON % "{}")
    (tmp / "datasets_head").mkdir()
    (tmp / "datasets_head" / "w.jsonl").write_bytes(TRACE.read_bytes())
    (Path(argv[0]) / "vllm" / "requests.jsonl").write_text(requests)
    (Path(argv[0]) / "vllm" / "timeseries.csv").write_text(timeseries)
    return argv


def csv_pair(tmp: Path, a_csv: str) -> list[str]:
    """Runs a and b with only a per-request CSV each; b's is valid."""
    (tmp / "a.csv").write_text(a_csv)
    (tmp / "b.csv").write_text("instance id,request id\n0,0\n")
    return [str(tmp / "a"), str(tmp / "b")]


def _truncated_gzip(tmp: Path) -> list[str]:
    (tmp / "results").mkdir()
    data = gzip.compress(b"instance id,request id\n" + b"0,1\n" * 1000)
    (tmp / "results" / "a_result.csv.gz").write_bytes(data[:len(data) // 2])
    whole = gzip.compress(b"instance id,request id\n0,1\n")
    (tmp / "results" / "b_result.csv.gz").write_bytes(whole)
    return [str(tmp / "a"), str(tmp / "b")]


def _logs(tmp: Path, text: str) -> list[str]:
    for name in ("a.txt", "b.txt"):
        (tmp / name).write_text(text)
    return [str(tmp / "a"), str(tmp / "b")]


def _link(link: Path, target: Path) -> Path:
    link.symlink_to(target)
    return link


def _instance_with(**keys: object) -> dict:
    cfg = copy(SINGLE)
    cfg["nodes"][0]["instances"][0].update(keys)
    return cfg


def _pd_two_models() -> dict:
    cfg = json.loads((REPO / "cluster_config/single_node_pd_instance.json").read_text())
    decode = next(i for n in cfg["nodes"] for i in n["instances"] if i["pd_type"] == "decode")
    decode["model_name"] = "meta-llama/Llama-3.2-1B"
    return cfg


def _trace_text(tmp: Path, text: str) -> Path:
    (tmp / "trace.jsonl").write_text(text)
    return tmp / "trace.jsonl"


def _trace_named(path: Path) -> Path:
    path.write_bytes(TRACE.read_bytes())
    return path


def _old_export(folder: Path) -> Path:
    """An export folder whose batch folder holds a file of the user's."""
    (folder / "instance0_batch0").mkdir(parents=True)
    (folder / "instance0_batch0" / "mine.txt").write_text("keep me\n")
    return folder


def _data_copy(tmp: Path, references: dict[str, str] | None = None) -> Path:
    """A data folder with the figure configs and `references` (relative path: text) in its
    reference_sim/ (the runs never start: an input is refused first)."""
    (tmp / "data" / "artifact_configs").mkdir(parents=True)
    (tmp / "data" / "reference_sim").mkdir()
    for rel, text in (references or {}).items():
        (tmp / "data" / "reference_sim" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / "data" / "reference_sim" / rel).write_text(text)
    return tmp / "data"


def _mkdir_at(path: Path) -> Path:
    path.mkdir()
    return path


def _file_at(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _plain(tmp: Path) -> Path:
    (tmp / "plain.txt").write_text("not a folder\n")
    return tmp / "plain.txt"


def _garbage_binary(tmp: Path, argv: list[str]) -> list[str]:
    """`argv` with its ASTRA-Sim binary replaced by bytes no kernel can execute."""
    (tmp / "astra").write_bytes(b"\x00\x01 not a program")
    return argv


def _inputs(folder: Path) -> dict[Path, str]:
    """Digests of the regular files (FIFOs are never opened: that would block)."""
    return _digests(folder)


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_input_gives_one_error_line_and_exit_2(tmp_path, capsys, name):
    entry, make, needle = CASES[name]
    argv = make(tmp_path)
    before = _inputs(tmp_path)
    names = sorted(p.name for p in tmp_path.rglob("*"))
    status, err = run(entry, argv, capsys)
    assert status == 2, err
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert needle in err[0], err[0]
    assert _inputs(tmp_path) == before  # no input touched
    assert sorted(p.name for p in tmp_path.rglob("*") if p.name != "__pycache__" and
                  "__pycache__" not in p.parts) == \
        [n for n in names if n != "__pycache__"]  # nothing written, nothing replaced


def test_output_name_near_the_length_limit_is_written(tmp_path, capsys):
    """A 251-byte file name leaves no room for `.<name>.<random>.tmp`: the temp name is cut."""
    out = tmp_path / ("x" * 247 + ".csv")
    argv = output_at(tmp_path, out, "--throughput-output", tmp_path / "t.csv")
    status, err = run(MAIN, argv, capsys)
    assert status == 0, err
    assert out.is_file() and out.read_text().startswith("instance id,")
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_failed_run_leaves_no_partial_chakra_export(tmp_path, capsys):
    """The export is written batch by batch; a run that fails later removes it."""
    argv = custom(tmp_path, "router", ROUTER_BASE + "class X(ShortestQueue):\n"
                  "    calls = 0\n    def route(self, request, candidates):\n"
                  "        X.calls += 1\n        if X.calls > 2:\n"
                  "            raise ValueError('tired')\n"
                  "        return super().route(request, candidates)\n",
                  "--export-chakra", tmp_path / "chakra", cfg=MULTI)
    argv[argv.index("--num-req") + 1] = "6"
    status, err = run(MAIN, argv, capsys)
    assert status == 2 and len(err) == 1 and "X.route raised ValueError: tired" in err[0], err
    assert not (tmp_path / "chakra").exists()
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize("dialect", ["casys", "upstream"])
def test_a_timed_out_binary_is_killed_with_what_it_started(tmp_path, capsys, dialect):
    """A wrapper script whose child hangs: both are gone when the run has stopped."""
    argv = binary(tmp_path, f"sleep 1000 & echo $! > {tmp_path / 'child'}; wait",
                  "--astra-sim-dialect", dialect, "--astra-sim-timeout", "0.5")
    status, err = run(MAIN, argv, capsys)
    assert status == 2 and "gave no answer within 0.5 s" in err[0], err
    child = int((tmp_path / "child").read_text())
    deadline = time.monotonic() + 5  # the kill is sent; on a loaded machine death takes a moment
    while _running(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(child)


def _running(pid: int) -> bool:
    """Whether `pid` runs (a killed orphan may linger as a zombie until init reaps it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_ends_a_run_like_ctrl_c(tmp_path, stop):
    """SIGTERM or SIGINT mid-run: one `error:` line, status 128 + signal, no output file, no
    temp file."""
    trace = tmp_path / "long.jsonl"
    line = '{"input_toks": 500, "output_toks": 2000, "arrival_time_ns": %d}\n'
    trace.write_text("".join(line % (i * 10**6) for i in range(20000)))
    out = tmp_path / "out.csv"
    proc = subprocess.Popen([sys.executable, str(REPO / "main.py"), "--no-progress", "--quiet",
                             "--dataset", str(trace), "--num-req", "all", "--output", str(out)],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True,  # a test runner may ignore SIGINT: not the child
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(1.5)
    proc.send_signal(stop)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + stop, err
    assert err.splitlines() == [f"error: interrupted ({stop.name}), command line, run again"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.jsonl"]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_a_console_that_cannot_take_text_is_one_error_line(tmp_path):
    """stdout on a full device: one `error:` line, status 2, no output file left."""
    argv = [str(a) for a in simulate_args(tmp_path) if a != "--quiet"]
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, str(REPO / "main.py"), *argv], cwd=tmp_path,
                              stdout=full, stderr=subprocess.PIPE, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        "error: reading or writing failed (No space left on device), an output file, its "
        "temporary spool or standard output, free space on that disk or send the output "
        "elsewhere, then run again"]
    assert not (tmp_path / "out.csv").exists()


def test_a_closed_stdout_is_one_error_line_before_the_run(tmp_path):
    argv = [str(a) for a in simulate_args(tmp_path)]
    proc = subprocess.run([sys.executable, str(REPO / "main.py"), *argv], cwd=tmp_path,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          timeout=60, pass_fds=(), preexec_fn=lambda: os.close(1))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == ["error: standard output is closed, command line, "
                                        "redirect it to a file or /dev/null instead"]
    assert not (tmp_path / "out.csv").exists()


def test_a_console_without_the_header_characters_gets_escapes(tmp_path):
    argv = [str(a) for a in simulate_args(tmp_path) if a != "--quiet"]
    proc = subprocess.run([sys.executable, str(REPO / "main.py"), *argv], cwd=REPO,
                          capture_output=True, timeout=60,
                          env={**os.environ, "PYTHONIOENCODING": "ascii"})
    assert proc.returncode == 0, proc.stderr
    assert b"\\u2022 cluster config" in proc.stdout and b"Traceback" not in proc.stderr


THREADS = ROUTER_BASE + """import threading, time
class Spins(ShortestQueue):
    def __init__(self, *a):
        super().__init__(*a)
        threading.Thread(target=lambda: [time.sleep(0.05) for _ in iter(int, 1)],
                         name="spinner").start()
class Fails(ShortestQueue):
    def __init__(self, *a):
        super().__init__(*a)
        def fail():
            raise RuntimeError("thread boom")
        worker = threading.Thread(target=fail, name="worker")
        worker.start()
        worker.join()
"""


@pytest.mark.parametrize(("cls", "warning"), [
    ("Spins", "warning: thread(s) 'spinner' started by custom code were still running at the "
              "end; they are stopped"),
    ("Fails", "warning: thread 'worker' raised RuntimeError: thread boom; the run went on "
              "without it")])
def test_threads_of_custom_code_neither_hang_the_run_nor_print_tracebacks(tmp_path, cls,
                                                                         warning):
    argv = [str(a) for a in custom(tmp_path, "router", THREADS, cfg=MULTI)]
    argv[argv.index("plug.m:X")] = f"plug.m:{cls}"
    proc = subprocess.run([sys.executable, str(REPO / "main.py"), *argv], cwd=REPO,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [warning]
    assert (tmp_path / "out.csv").is_file()


STREAMS = ROUTER_BASE + """import sys
class DelFails(ShortestQueue):
    def __del__(self):
        raise RuntimeError("del boom")
class ClosesStderr(ShortestQueue):
    def route(self, *a):
        sys.stderr.close()
        raise RuntimeError("after close")
class DropsStdout(ShortestQueue):
    def route(self, *a):
        sys.stdout = None
        return super().route(*a)
"""


@pytest.mark.parametrize(("cls", "status", "line"), [
    ("DelFails", 0, "warning: DelFails.__del__ raised RuntimeError: del boom where it could not "
                    "stop the run (ignored)"),
    ("ClosesStderr", 2, "error: ClosesStderr.route raised RuntimeError: after close at "),
    ("DropsStdout", 2, "error: standard output was replaced during the run, so part of the "
                       "console text is missing, standard output, do not replace sys.stdout")])
def test_custom_code_meddling_with_finalizers_or_streams_gets_one_line(tmp_path, cls, status,
                                                                        line):
    argv = [str(a) for a in custom(tmp_path, "router", STREAMS, cfg=MULTI)]
    argv[argv.index("plug.m:X")] = f"plug.m:{cls}"
    proc = subprocess.run([sys.executable, str(REPO / "main.py"), *argv], cwd=REPO,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert proc.returncode == status, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(line), proc.stderr


def test_custom_code_that_closes_stdout_is_one_error_line(tmp_path):
    source = (ROUTER_BASE + "import sys\nclass X(ShortestQueue):\n    def route(self, *a):\n"
              "        sys.stdout.close()\n        return super().route(*a)\n")
    argv = [str(a) for a in custom(tmp_path, "router", source, cfg=MULTI)]
    proc = subprocess.run([sys.executable, str(REPO / "main.py"), *argv], cwd=REPO,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == ["error: standard output was closed during the run, "
                                        "standard output, do not close sys.stdout in custom code"]
    assert not (tmp_path / "out.csv").exists()


def test_a_reader_that_goes_away_ends_the_run_quietly(tmp_path):
    """`| head -1`: status 1 and no error on stderr, as Unix tools do (a status block every
    simulated millisecond: far more text than the pipe holds, so the run meets the close)."""
    argv = [str(a) for a in simulate_args(tmp_path, "--log-interval", "0.001") if a != "--quiet"]
    main = subprocess.Popen([sys.executable, str(REPO / "main.py"), *argv], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    main.stdout.readline()
    main.stdout.close()
    assert main.wait(timeout=60) == 1
    err = main.stderr.read().decode()
    assert "error:" not in err and "Traceback" not in err, err


def test_a_disk_that_fills_up_mid_run_is_one_error_line(tmp_path, capsys, monkeypatch):
    """A write that fails after the up-front checks (ENOSPC while streaming the CSV)."""
    def full(*_: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(RequestCsv, "on_batch_end", full)
    argv = simulate_args(tmp_path)
    before = _inputs(tmp_path)
    status, err = run(MAIN, argv, capsys)
    assert status == 2 and len(err) == 1, err
    assert err[0].startswith("error: reading or writing failed (No space left on device), ")
    assert not (tmp_path / "out.csv").exists()
    assert _inputs(tmp_path) == before


def test_main_py_without_its_packages_says_how_to_install(tmp_path):
    """`python main.py` from a checkout whose Python lacks numpy: one line, status 2."""
    proc = subprocess.run([sys.executable, "-S", str(REPO / "main.py"), "--help"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr == (f"error: the Python package 'numpy' is missing, {sys.executable}, "
                           "run ./run.sh (it sets up .venv) or pip install -e . first\n")


def test_a_flag_given_twice_with_different_values_is_warned(tmp_path, capsys):
    """argparse keeps the last value; the run says so instead of ignoring the first."""
    argv = simulate_args(tmp_path, "--seed", "1", "--seed", "2", "--seed", "2", "--no-progress")
    status, err = run(MAIN, argv, capsys)
    assert status == 0, err
    assert "warning: --seed given 3 times (1, 2, 2); the last, 2, is used" in err
    assert not any("--no-progress given" in line for line in err)  # same value: no warning


def test_a_flag_given_once_is_not_warned_in_any_command(tmp_path, capsys):
    status, err = run(MAIN, simulate_args(tmp_path, "--seed", "1"), capsys)
    assert status == 0 and not any(line.startswith("warning:") for line in err), err
    status, err = run(GENERATE, gen(tmp_path, "--seed", "4"), capsys)
    assert status == 0 and not any(line.startswith("warning:") for line in err), err
    status, err = run(GENERATE, gen(tmp_path, "--seed", "4", "--seed", "5"), capsys)
    assert status == 0 and "warning: --seed given 2 times (4, 5); the last, 5, is used" in err


def test_control_characters_in_an_error_line_are_escaped(tmp_path, capsys):
    """A NUL or newline from a hostile file cannot split the one line or drive the terminal."""
    cfg = copy(SINGLE)
    cfg["nodes"][0]["instances"][0]["model_name"] = "acme/a\x00b\nc\x1b[2J"
    status, err = run(MAIN, simulate_args(tmp_path, cfg=cfg), capsys)
    assert status == 2 and len(err) == 1, err
    assert err[0].startswith("error: unknown model 'acme/a\\x00b\\x0ac\\x1b[2J', ")


def test_a_repeated_flag_before_a_bad_input_leaves_the_error_line_alone(tmp_path, capsys):
    """The warning waits for the set-up to succeed: a failed run prints its one line only."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input_toks": 1, "output_toks": 1}\n')
    argv = simulate_args(tmp_path, "--dataset", bad, "--seed", "1", "--seed", "2")
    status, err = run(MAIN, argv, capsys)
    assert status == 2 and len(err) == 1 and err[0].startswith("error: "), err
    status, err = run(GENERATE, gen(tmp_path, "--seed", "4", "--seed", "5", "--out", ""), capsys)
    assert status == 2 and len(err) == 1 and err[0].startswith("error: "), err


@pytest.mark.parametrize("text,message", [
    ("time_s\tthroughput\n0\n", "row 2 has 1 cells, the header 2"),
    ("", "no header and data rows"),
    ("time_s\tthroughput\n0\tinf\n", "a cell holds 'inf', not a finite number"),
    ("time_s\tthroughput\n0\t\udcff\n", "not UTF-8 text"),
])
def test_a_broken_reference_series_is_one_input_error(tmp_path, text, message):
    """The figure tool reads reference TSVs of the shared data: a damaged one is an
    InputError naming the file, not a traceback."""
    from evaluation import series
    from llmsim_core.errors import InputError

    path = tmp_path / "SD_throughput.tsv"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(InputError) as caught:
        series.read_tsv(path)
    assert message in caught.value.what and caught.value.where == str(path)
