"""The console parser re-derives every parsed TSV of the existing simulator from its logs."""

from __future__ import annotations

import pytest

from evaluation import series
from evaluation.console import parse_console
from tests.conftest import DATA, needs_data

REF = DATA / "reference_sim"
F10 = {"gpu-only": "gpu_only", "pim": "pim", "pim-sbi": "pim_sbi"}


def log(path: str):
    return parse_console((REF / path).read_text(encoding="utf-8"))


def cases():
    for hw in ("A6000", "H100"):
        for run in ("MD", "SD+PC", "PDD", "SM"):
            yield (f"figure_5/{hw}/parsed/{run}_throughput.tsv",
                   lambda hw=hw, run=run: series.throughput(log(
                       f"figure_5/{hw}/logs/{run}_output.txt")))
    for run in ("SD", "MD", "PDD", "SM"):
        yield (f"figure_8/parsed/{run}_latency.tsv",
               lambda run=run: series.latency(log(f"figure_8/logs/{run}_output.txt")))
        yield (f"figure_8/parsed/{run}_sim_time.tsv",
               lambda run=run: series.sim_time(log(f"figure_8/logs/{run}_output.txt")))
    yield "figure_9/parsed/SD_latency.tsv", lambda: series.latency(
        log("figure_9/logs/SD_output.txt"))
    for tp in (1, 2):
        yield (f"figure_6/parsed/power_tp{tp}.tsv",
               lambda tp=tp: series.power(log(f"figure_6/logs/power_output_tp{tp}.txt")))
    yield "figure_6/parsed/component_energy.tsv", lambda: series.component_energy(
        {f"TP {tp}": log(f"figure_6/logs/power_output_tp{tp}.txt") for tp in (1, 2)})
    f10 = lambda: {k: log(f"figure_10/logs/{v}_b256_output.txt") for k, v in F10.items()}  # noqa: E731
    yield "figure_10/parsed/component_energy.tsv", lambda: series.component_energy(f10())
    yield "figure_10/parsed/energy_per_token.tsv", lambda: series.energy_per_token(f10())
    yield "figure_7/parsed/SD+PC.tsv", lambda: series.prefix_single(
        log("figure_7/logs/SD+PC_output.txt"))
    for inst in (0, 1):
        yield (f"figure_7/parsed/MD+PC+PS_inst{inst}.tsv",
               lambda inst=inst: series.prefix_multi(log("figure_7/logs/MD+PC+PS_output.txt"),
                                                     inst))
    yield "figure_7/parsed/MD+PC+PS_shared_cpu.tsv", lambda: series.prefix_shared_cpu(
        log("figure_7/logs/MD+PC+PS_output.txt"))


@needs_data
@pytest.mark.parametrize("path,derive", list(cases()), ids=[c[0] for c in cases()])
def test_derived_tsv_equals_the_reference_parse(tmp_path, path, derive):
    series.write_tsv(tmp_path / "ours.tsv", derive())
    ours, ref = series.read_tsv(tmp_path / "ours.tsv"), series.read_tsv(REF / path)
    assert list(ours) == list(ref)
    for column, values in ref.items():
        assert ours[column] == pytest.approx(values, rel=1e-9) if isinstance(values[0], float) \
            else ours[column] == values, column
