"""Power and energy (serving.md §11, formats.md §1.7, §6.4): worked numbers, timing of the
charges, the reference runs, the invariants and bad power blocks."""

from __future__ import annotations

import ast
import csv
import json
import re
from types import SimpleNamespace

import pytest

from evaluation.console import parse_console
from inference_serving.cluster_config import cluster_from_dict
from inference_serving.compat import CompatProfile
from inference_serving.invariants import InvariantError
from inference_serving.iteration_cost import DeviceBusy, IterationCost, Usage
from inference_serving.power import PimPower, PowerMeter, static_parts
from inference_serving.simulator import SimResult
from tests.conftest import DATA, REPO, needs_data
from tests.test_cli_errors import SINGLE, run_main, write_json, write_trace

# The figure-6 TP1 server (formats.md §1.7).
FIG6 = {"base_node_power": 219,
        "npu": {"A6000": {"idle_power": 33, "standby_power": 89, "active_power": 300,
                          "standby_duration": 18}},
        "cpu": {"idle_power": 10, "active_power": 185, "util": 0.5},
        "dram": {"dimm_size": 32, "idle_power": 4.0, "energy_per_bit": 6.0},
        "link": {"num_links": 1, "idle_power": 5.0, "energy_per_bit": 4.0},
        "nic": {"num_nics": 1, "idle_power": 11.2},
        "storage": {"num_devices": 1, "idle_power": 5.9}}
S = 1_000_000_000


def powered(power: dict | None = None, nodes: int = 1) -> dict:
    """SINGLE (one A6000, 128 GB host memory) with a power block on each of `nodes` nodes."""
    cfg = json.loads(json.dumps(SINGLE))
    cfg["nodes"][0]["power"] = json.loads(json.dumps(power or FIG6))
    cfg["nodes"] = [json.loads(json.dumps(cfg["nodes"][0])) for _ in range(nodes)]
    cfg["num_nodes"] = nodes
    return cfg


def meter(cfg: dict, at_schedule: bool = False, **kwargs) -> tuple[PowerMeter, list]:
    cluster = cluster_from_dict(cfg, "c.json")
    insts = [SimpleNamespace(spec=spec, index=spec.instance_id, in_flight=[])
             for spec in cluster.instances]
    return PowerMeter(cluster, insts, 1.0, at_schedule, check=True, **kwargs), insts


def cost(duration_ns: int, compute_ns: int = 0, **usage: object) -> IterationCost:
    return IterationCost(duration_ns, account=lambda: Usage({0: DeviceBusy(compute_ns)},
                                                            **usage))


def finish(m: PowerMeter, end_ns: int, generated: int = 10) -> SimResult:
    result = SimResult(end_ns, 1, SimpleNamespace(total_generated=generated), [], [])
    m.on_finish(result)
    return result


def test_figure_6_idle_and_standby_plateaus():
    cluster = cluster_from_dict(powered(), "c.json")
    parts = static_parts(cluster.nodes[0], cluster.nodes[0].power, None)
    # base 219 + NPU idle 33 + CPU 10 + 175 × 0.5 + 4 DIMMs × 4 + link 5 + NIC 11.2 + storage 5.9
    assert parts == pytest.approx([219, 33, 97.5, 16, 5, 11.2, 5.9])
    m, (inst,) = meter(powered())
    m.on_batch_start(inst, None, 0, S // 2, [cost(S // 2)])
    m.on_batch_end(inst, None, S // 2, [])
    for k in range(1, 21):
        m.on_window(k * S, (0.0, 0.0))
    # Window 1: half a second of standby; then 443.6 W until 18 s after the batch, then idle.
    assert m.windows_w[0] == pytest.approx(387.6 + 28.0)
    assert m.windows_w[1:18] == [443.6] * 17
    assert m.windows_w[18] == pytest.approx(387.6 + 28.0)  # standby ends at 18.5 s
    assert m.windows_w[19] == 387.6
    finish(m, 20 * S)


def test_npu_and_cpu_energy_are_charged_while_the_stage_runs():
    # A 1-s stage from 0.5 s with 0.8 s of compute: (300 − 33) × 0.8 = 213.6 J of NPU and
    # 175 × (0.7 − 0.5) × 0.8 = 28 J of CPU energy, half of it in each window.
    for at_schedule, first, second in ((False, 120.8, 120.8), (True, 241.6, 0.0)):
        m, (inst,) = meter(powered(), at_schedule)
        m.on_batch_start(inst, None, S // 2, 3 * S // 2, [cost(S, 8 * S // 10)])
        m.on_window(S, (0.0, 0.0))
        m.on_batch_end(inst, None, 3 * S // 2, [])
        m.on_batch_start(inst, None, 3 * S // 2, 3 * S // 2 + 1, [cost(1)])  # no standby
        m.on_window(2 * S, (0.0, 0.0))
        assert m.windows_w == pytest.approx([387.6 + first, 387.6 + second], abs=0.006)
        report = finish(m, 2 * S).power
        parts = dict(zip(("base", "npu", "cpu"), report.components_j[0], strict=False))
        assert parts["npu"] == pytest.approx(33 * 2 + 213.6)
        assert parts["cpu"] == pytest.approx(97.5 * 2 + 28)
        assert report.energy_per_token_j == pytest.approx(report.total_j / 10)


def test_dram_link_and_pim_energy_per_byte_and_busy_time():
    # 1 GB swapped (plus 100 staging bytes that are not DRAM energy): 6 pJ × 8 × 1e9 = 0.048 J;
    # 1 GB over the ring: 4 pJ × 8 × 1e9 = 0.032 J; 2 s of PIM busy: (0.76 − 0.16) × 2 = 1.2 J.
    pim = PimPower(idle_w=0.16, peak_w=0.76, channel_gb=1)
    cfg = powered()
    cfg["nodes"][0]["cpu_mem"]["mem_size"] = 256
    m, (inst,) = meter(cfg, pim={0: pim}, pim_busy=lambda usage: {0: 2 * S})
    assert m.static[0][3] == pytest.approx(256 * 0.16)  # HBM2: 256 channels × 0.16 W = 40.96 W
    m.on_batch_start(inst, None, 0, S, [cost(S, tier_bytes={"host:0": 10**9 + 100},
                                              ring_bytes={"tp:0": 1e9}, staging_bytes=100)])
    report = finish(m, S).power
    dram, link = report.components_j[0][3], report.components_j[0][4]
    assert dram == pytest.approx(40.96 + 0.048 + 1.2)
    assert link == pytest.approx(5.0 + 0.032)


def test_invariant_catches_a_window_below_idle():
    m, (inst,) = meter(powered())
    m.on_window(S, (0.0, 0.0))
    m.windows_w[0] = 300.0
    with pytest.raises(InvariantError, match="below the idle power"):
        finish(m, 2 * S)


def test_dram_block_without_dimm_needs_pim():
    cfg = powered()
    del cfg["nodes"][0]["power"]["dram"]["dimm_size"]
    from llmsim_core.errors import InputError
    with pytest.raises(InputError, match="dram.dimm_size"):
        meter(cfg)
    assert meter(cfg, pim={0: PimPower(0.16, 0.76, 1)})[0].static[0][3] == pytest.approx(20.48)


def run(tmp_path, cfg: dict, *extra: str, num_req: str = "6") -> tuple:
    path = write_json(tmp_path / "c.json", cfg)
    metrics = tmp_path / "m.json"
    done = run_main(["--cluster-config", str(path), "--dataset", "dataset/example_trace.jsonl",
                     "--num-req", num_req, "--log-interval", "0.2", "--check-invariants",
                     "--metrics-json", str(metrics), *extra])
    assert done.returncode == 0, done.stderr
    return done, json.loads(metrics.read_text())


def test_console_block_parses_with_the_evaluation_regexes(tmp_path):
    done, metrics = run(tmp_path, powered())
    run_ = parse_console(done.stdout)
    power = metrics["power"]
    assert run_.power_w == power["window_power_w"] == [t.power_w for t in run_.ticks]
    assert len(run_.power_w) == len(run_.throughput) > 3
    assert list(run_.energy_j) == ["Base Node", "NPU", "CPU", "Memory", "Link", "NIC",
                                   "Storage"]
    # The formats.md §6.4 regex, which keeps the whole label.
    labels = re.findall(r"([A-Za-z ]+energy consumption) \(J\):\s+([\d.]+)", done.stdout)
    assert [label.strip() for label, _ in labels][:2] == ["Base Node energy consumption",
                                                          "NPU energy consumption"]
    assert len(labels) == 7
    assert run_.total_energy_kj == round(power["total_energy_kj"], 2)
    assert "Power per 0.2 sec (W): [" in done.stdout
    assert min(run_.power_w) >= 387.6
    node = power["nodes"]["0"]
    assert node["window_power_w"] == power["window_power_w"]
    assert sum(node["components_j"].values()) == pytest.approx(node["total_energy_j"])
    assert power["energy_per_token_j"] == pytest.approx(
        node["total_energy_j"] / metrics["total_generated_tokens"])


@pytest.mark.parametrize("config", ["single_node_tp2_instance", "single_node_pp2_instance",
                                    "single_node_pd_instance", "dual_node_multi_instance"])
def test_invariants_hold_on_parallel_and_multi_node_clusters(tmp_path, config):
    cfg = json.loads((REPO / f"cluster_config/{config}.json").read_text())
    for node in cfg["nodes"]:
        node["power"] = json.loads(json.dumps(FIG6))
        node["power"]["npu"] = {i["hardware"]: FIG6["npu"]["A6000"] for i in node["instances"]}
    _, metrics = run(tmp_path, cfg)
    power = metrics["power"]
    assert set(power["nodes"]) == {str(n) for n in range(len(cfg["nodes"]))}
    end_s = metrics["total_clocks_ns"] / 1e9
    link = sum(n["components_j"]["link"] for n in power["nodes"].values())
    if config == "single_node_tp2_instance":  # the TP2 all-reduces spend link energy
        assert link > 5.0 * end_s + 1e-6
    windows = power["window_power_w"]
    assert windows == pytest.approx([sum(w) for w in zip(*(n["window_power_w"] for n in
                                                          power["nodes"].values()),
                                                     strict=True)])


def test_a_node_without_power_block_is_named_and_power_is_off(tmp_path):
    cfg = powered(nodes=2)
    del cfg["nodes"][1]["power"]
    path = write_json(tmp_path / "c.json", cfg)
    done = run_main(["--cluster-config", str(path), "--dataset", "dataset/example_trace.jsonl",
                     "--num-req", "4"])
    assert done.returncode == 0, done.stderr
    warnings = [ln for ln in done.stderr.splitlines() if "power" in ln]
    assert len(warnings) == 1 and "node 1 has no power block" in warnings[0]
    assert "Power" not in done.stdout and "Avg power" not in done.stdout


def test_power_off_prints_nothing_and_artifact_mode_charges_at_schedule():
    assert not CompatProfile().energy_at_schedule and CompatProfile.artifact().energy_at_schedule
    done = run_main(["--dataset", "dataset/example_trace.jsonl", "--num-req", "3"])
    assert "power" not in done.stdout.lower() and "energy" not in done.stdout.lower()


FIG6_FLAGS = ["--scheduler", "legacy", "--max-batch", "0", "--fp", "16", "--block-size", "16",
              "--log-interval", "1", "--compat", "artifact", "--check-invariants"]


def _series(text: str) -> list[float]:
    line = next(ln for ln in text.splitlines() if ln.startswith("Power per "))
    return ast.literal_eval(line.split(":", 1)[1].strip())


@needs_data
@pytest.mark.parametrize("tp", [1, 2])
def test_figure_6_matches_the_existing_simulator(tmp_path, tp):
    done = run_main(["--cluster-config",
                     str(DATA / f"artifact_configs/figure_6/power_config_tp{tp}.json"),
                     "--dataset", str(DATA / "datasets/sharegpt_pulse_req10_n3_delay60.jsonl"),
                     "--num-req", "30", "--perf-models", str(DATA / "perf_models"),
                     *FIG6_FLAGS])
    assert done.returncode == 0, done.stderr
    ref_text = (DATA / f"reference_sim/figure_6/logs/power_output_tp{tp}.txt").read_text()
    ours, ref = parse_console(done.stdout), parse_console(ref_text)
    for name, joules in ref.energy_j.items():
        assert ours.energy_j[name] == pytest.approx(joules, rel=1e-4, abs=0.02), name
    assert ours.total_energy_kj == ref.total_energy_kj
    a, b = _series(done.stdout), _series(ref_text)
    assert len(a) == len(b)
    mape = sum(abs(x - y) / y for x, y in zip(a, b, strict=True)) / len(b)
    assert mape < 0.01
    # Only windows at a pulse's edges differ by more than 1 %: the existing simulator closes a
    # log window at the first event after its end, and a pulse starts or ends in them.
    off = [k for k, (x, y) in enumerate(zip(a, b, strict=True)) if abs(x - y) > 0.01 * y]
    edges = [k for k in range(len(b)) if k == 0 or abs(b[k] - b[k - 1]) > 0.1 * b[k - 1]]
    assert len(off) <= 7 and all(k in edges or k - 1 in edges for k in off), (off, edges)
    # The idle and standby plateaus (387.6 / 443.6 W at TP1): the same values, and as many
    # windows but up to the three pulse starts, which the existing simulator's windows see
    # early.
    idle, standby = (387.6, 443.6) if tp == 1 else (400.6, 512.6)
    assert b.count(idle) > 50 and b.count(standby) == a.count(standby) == 34
    assert 0 <= a.count(idle) - b.count(idle) <= 3


@needs_data
def test_power_example_matches_the_existing_simulator(tmp_path):
    out = tmp_path / "out.csv"
    config = DATA / "cluster_config/single_node_power_instance.json"
    done = run_main(["--cluster-config", str(config),
                     "--dataset", str(DATA / "datasets/example_trace.jsonl"), "--num-req", "10",
                     "--perf-models", str(DATA / "perf_models"), "--fp", "16", "--block-size",
                     "16", "--log-interval", "0.1", "--compat", "artifact", "--scheduler",
                     "legacy", "--check-invariants", "--output", str(out)])
    assert done.returncode == 0, done.stderr
    with out.open() as a, (DATA / "reference_sim/examples/example_power_run.csv").open() as b:
        ours = {r["request id"]: r for r in csv.DictReader(a)}
        ref = {r["request id"]: r for r in csv.DictReader(b)}
    assert ours.keys() == ref.keys()
    for rid, row in ref.items():
        assert int(ours[rid]["end_time"]) == pytest.approx(int(row["end_time"]), rel=0.01)
    series = _series(done.stdout)
    # Idle: 60 + 25 + 10 + 190 × 0.15 + 4 × 2 + 5 + 20 + 2 × 5 = 166.5 W; every window is above.
    assert len(series) == int(max(int(r["end_time"]) for r in ref.values()) / 1e8)
    assert min(series) > 166.5


# --- bad power blocks: one error line, exit 2, no output file -----------------------------

def _bad(tmp_path, change) -> tuple[list[str], str]:
    cfg = powered()
    needle = change(cfg["nodes"][0]["power"])
    return ["--cluster-config", str(write_json(tmp_path / "c.json", cfg))], needle


def _drop(*keys: str):
    def change(power: dict) -> str:
        obj = power
        for key in keys[:-1]:
            obj = obj[key]
        del obj[keys[-1]]
        return keys[-1]
    return change


def _set(value: object, *keys: str, needle: str | None = None):
    def change(power: dict) -> str:
        obj = power
        for key in keys[:-1]:
            obj = obj[key]
        obj[keys[-1]] = value
        return needle or keys[-1]
    return change


BAD_POWER = {
    "missing_base_node_power": _drop("base_node_power"),
    "missing_nic_section": _drop("nic"),
    "missing_cpu_util": _drop("cpu", "util"),
    "missing_standby_duration": _drop("npu", "A6000", "standby_duration"),
    "missing_link_energy_per_bit": _drop("link", "energy_per_bit"),
    "npu_entry_missing_for_used_hardware": _set({"H100": FIG6["npu"]["A6000"]}, "npu",
                                                needle="no entry for hardware 'A6000'"),
    "negative_idle_power": _set(-1, "nic", "idle_power"),
    "negative_energy_per_bit": _set(-6.0, "dram", "energy_per_bit"),
    "nan_power": _set(float("nan"), "base_node_power", needle="NaN"),
    "util_above_one": _set(1.5, "cpu", "util"),
    "fractional_link_count": _set(1.5, "link", "num_links"),
    "string_power": _set("300W", "npu", "A6000", "active_power"),
    "active_below_idle": _set(20, "npu", "A6000", "active_power",
                              needle="below idle_power"),
    "unknown_key_in_power": _set(1, "gpu", needle="unknown key 'gpu'"),
    "unknown_key_in_dram": _set(1, "dram", "dimm_count", needle="dimm_count"),
    "power_not_an_object": lambda p: p.clear() or "missing required key",
}


@pytest.mark.parametrize("name", sorted(BAD_POWER))
def test_bad_power_block_gives_one_error_line_and_exit_2(tmp_path, name):
    args, needle = _bad(tmp_path, BAD_POWER[name])
    if name == "nan_power":  # json.dumps writes NaN, which strict JSON rejects
        assert "NaN" in (tmp_path / "c.json").read_text()
    trace = write_trace(tmp_path / "ok.jsonl", ['{"input_toks": 8, "output_toks": 4, '
                                                '"arrival_time_ns": 0}'] * 3)
    done = run_main([*args, "--dataset", str(trace), "--output", str(tmp_path / "out.csv")])
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert needle in lines[0]
    assert not (tmp_path / "out.csv").exists()


def test_the_pd_calibration_overhead_is_not_npu_or_cpu_energy():
    # Two ranks each busy 1 s, of which 0.25 s is the fitted P/D o_proj overhead:
    # NPU (300 − 33) × 2 × 0.75 = 400.5 J, CPU 175 × 0.2 × 0.75 = 26.25 J.
    cfg = powered()
    cfg["nodes"][0]["instances"][0].update(npu_num=2)
    m, (inst,) = meter(cfg)
    busy = DeviceBusy(S)
    m.on_batch_start(inst, None, 0, S, [IterationCost(S, account=lambda: Usage(
        {0: busy, 1: busy}, overhead_ns=S // 4))])
    parts = finish(m, S).power.components_j[0]
    assert parts[1] == pytest.approx(66 + 400.5) and parts[2] == pytest.approx(97.5 + 26.25)


def test_plan_usage_counts_ring_volumes_staging_and_the_overhead():
    from inference_serving.pricers.base import plan_usage
    from llmsim_core.iteration_plan import (
        COLLECTIVE,
        HOST,
        LOAD,
        SEND,
        STORE,
        IterationPlan,
        LayerGroup,
        PlanOp,
        compute,
    )
    fabric = SimpleNamespace(memory_ns=lambda target, n: 0, collective_ns=lambda target, n: 0,
                             send_ns=lambda target, n: 0, link_name=lambda kind: f"{kind}:0",
                             spec=SimpleNamespace(first_npu=0))
    ops = (compute("q_proj", 10, 4), PlanOp(COLLECTIVE, "all_reduce", nbytes=1000,
                                            target="all_reduce"),
           PlanOp(COLLECTIVE, "all_to_all", nbytes=1000, target="all_to_all"),
           compute("pd_overhead", 5, 4), PlanOp(SEND, "kv_send", nbytes=300, target="pd"))
    plan = IterationPlan(0, 0, 0, 4, 4, 1, (PlanOp(LOAD, "input_load", nbytes=16, target=HOST),
                                            PlanOp(LOAD, "kv_load", nbytes=100, target=HOST)),
                         (LayerGroup(0, 2, ops),),
                         store=PlanOp(STORE, "output_store", nbytes=8, target=HOST))
    usage = plan_usage(plan, fabric)
    # Per layer: all-reduce 2 × 3/4 × 1000 + all-to-all 3/4 × 1000; two layers.
    assert usage.ring_bytes == {"tp:0": 2 * 2250.0, "pd:0": 600.0}
    assert usage.tier_bytes == {"host:0": 4 * (16 + 100 + 8)}
    assert usage.staging_bytes == 4 * (16 + 8) and usage.overhead_ns == 10
    assert usage.devices[0].compute_ns == 30


def test_api_results_carry_the_power_report():
    from inference_serving.api import simulate
    results = simulate(powered(), dataset="dataset/example_trace.jsonl", num_req=4,
                       log_interval=0.2)
    power = results.power
    assert power is not None and power.node_windows_w[0] == power.windows_w
    assert results.summary["power"]["window_power_w"] == power.windows_w
    assert len(power.windows_w) == len(results.windows)
    assert results.summary["power"]["total_energy_kj"] == pytest.approx(power.total_j / 1000)
    assert simulate(SINGLE, dataset="dataset/example_trace.jsonl", num_req=4).power is None


@needs_data
def test_figure_10_gpu_only_energy_matches_the_existing_simulator():
    config = DATA / "artifact_configs/figure_10/gpu_only_config.json"
    done = run_main(["--cluster-config", str(config),
                     "--dataset", str(DATA / "datasets/fixed_in128_out512_req256_rate10.jsonl"),
                     "--num-req", "256", "--perf-models", str(DATA / "perf_models"), "--quiet",
                     *FIG6_FLAGS])
    assert done.returncode == 0, done.stderr
    ours = parse_console(done.stdout)
    ref = (DATA / "reference_sim/figure_10/parsed/component_energy.tsv").read_text().splitlines()
    names = {"Others": "Base Node", "GPU": "NPU", "Memory": "Memory", "CPU": "CPU",
             "Link": "Link", "NIC": "NIC", "Storage": "Storage"}
    for row in ref[1:]:
        name, joules = row.split("\t")[:2]
        assert ours.energy_j[names[name]] == pytest.approx(float(joules), abs=0.02), name
    per_token = float((DATA / "reference_sim/figure_10/parsed/energy_per_token.tsv")
                      .read_text().splitlines()[1].split("\t")[0])
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("Energy per generated"))
    assert float(line.split()[-1]) == pytest.approx(per_token, abs=1e-4)
