"""One example run per feature, into `output/examples/` (`./run.sh examples`).

Each example is a `main.py` command on the bundled cluster configs and the 100-request example
trace; its console output goes to `<name>.log` and its per-request CSV to `<name>.csv`. A table
of the runs (simulated time, mean TTFT, wall time) is printed at the end. Usage:
`python -m examples.run_all [--only NAME,NAME] [--out DIR]`.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRACE = "dataset/example_sharegpt_req100_rate10.jsonl"


@dataclass(frozen=True, slots=True)
class Example:
    """One feature's run: a name, what it shows, and its extra `main.py` flags."""

    name: str
    shows: str
    flags: tuple[str, ...]


def _config(name: str) -> tuple[str, str]:
    return "--cluster-config", f"cluster_config/{name}.json"


EXAMPLES = (
    Example("single", "one A6000, Llama-3.1-8B, vLLM-v1 scheduling",
            _config("single_node_single_instance")),
    Example("tp2", "tensor parallelism 2 (ring all-reduces)", _config("single_node_tp2_instance")),
    Example("pp2", "two pipeline stages", _config("single_node_pp2_instance")),
    Example("tp2_pp2", "two stages of TP2", _config("single_node_tp2_pp2_instance")),
    Example("multi", "two instances behind a random router",
            (*_config("single_node_multi_instance"), "--request-routing-policy", "RAND")),
    Example("pd", "prefill/decode disaggregation", _config("single_node_pd_instance")),
    Example("pd_tp2", "a TP2 prefill node feeding two TP2 decode instances",
            _config("dual_node_pd_tp2")),
    Example("moe", "mixture of experts (Phi-mini-MoE), seeded expert routing",
            _config("single_node_moe_instance")),
    Example("cxl", "blocks 24-31 on two CXL devices, lm_head in host memory",
            _config("single_node_cxl_instance")),
    Example("prefix", "prefix caching with a shared CPU prefix pool on two instances",
            (*_config("single_node_multi_instance"), "--enable-prefix-caching",
             "--enable-prefix-sharing", "--prefix-storage", "CPU")),
    Example("power", "power and energy per node (the paper's figure-6 server)",
            (*_config("single_node_power_instance"), "--log-interval", "0.5")),
    Example("pim", "decode attention offloaded to HBM2 PIM channels",
            (*_config("single_node_pim_instance"), "--enable-attn-offloading")),
    Example("pim_sbi", "PIM offload with sub-batch interleaving",
            (*_config("single_node_pim_instance"), "--enable-attn-offloading",
             "--enable-sub-batch-interleaving")),
    Example("legacy", "the existing LLMServingSim scheduler (whole prompts, swapping)",
            (*_config("single_node_single_instance"), "--scheduler", "legacy")),
    Example("custom_router", "a user's router class",
            (*_config("dual_node_multi_instance"), "--request-routing-policy", "CUSTOM",
             "--custom-router", "examples.custom_router:ShortestQueue")),
    Example("replay", "every iteration replayed by the engine, Chakra graphs exported",
            (*_config("single_node_tp2_instance"), "--pricer", "replay", "--num-req", "4",
             "--export-chakra", "{out}/replay_chakra")),
    Example("slo", "fleet SLO attainment and goodput",
            (*_config("single_node_multi_instance"), "--slo-ttft-ms", "200",
             "--slo-tpot-ms", "60")),
    Example("timeline", "a Perfetto timeline and PNG plots",
            (*_config("single_node_pd_instance"), "--trace-output", "{out}/timeline.json",
             "--plot-dir", "{out}/plots")),
)


def run(example: Example, out: Path) -> tuple[float, float, float]:
    """Run one example; return (simulated s, mean TTFT ms, wall s)."""
    flags = [flag.replace("{out}", str(out)) for flag in example.flags]
    csv_path = out / f"{example.name}.csv"
    command = [sys.executable, "main.py", "--dataset", TRACE, "--no-progress", *flags,
               "--output", str(csv_path)]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    (out / f"{example.name}.log").write_text(done.stdout + done.stderr)
    if done.returncode:
        raise SystemExit(f"example {example.name} failed: {done.stderr.strip()}")
    with csv_path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    simulated = max(int(r["end_time"]) for r in rows) / 1e9
    ttft = sum(int(r["TTFT"]) for r in rows) / len(rows) / 1e6
    return simulated, ttft, wall


def main(argv: list[str] | None = None) -> int:
    """Run the chosen examples and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated example names (default: all)")
    parser.add_argument("--out", default="output/examples", help="output folder")
    args = parser.parse_args(argv)
    chosen = EXAMPLES
    if args.only:
        names = args.only.split(",")
        unknown = sorted(set(names) - {e.name for e in EXAMPLES})
        if unknown:
            print(f"error: unknown example(s) {', '.join(unknown)}, --only, use "
                  f"{', '.join(e.name for e in EXAMPLES)}", file=sys.stderr)
            return 2
        chosen = tuple(e for e in EXAMPLES if e.name in names)
    out = (REPO / args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    print(f"{'example':<14} {'simulated s':>11} {'mean TTFT ms':>12} {'wall s':>7}  shows")
    for example in chosen:
        simulated, ttft, wall = run(example, out)
        print(f"{example.name:<14} {simulated:11.3f} {ttft:12.2f} {wall:7.2f}  {example.shows}")
    print(f"logs and CSVs in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
