"""The experiment table of evaluation.md §5: one row per run of Figures 5-10."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# Settings of every run of the existing simulator (§2.1): whole prompts, unlimited batch,
# 1-s log bins, and its timing quirks, so ours is comparable with its outputs.
COMMON_FLAGS = ("--scheduler", "legacy", "--max-batch", "0", "--fp", "16", "--block-size", "16",
                "--log-interval", "1", "--compat", "artifact", "--no-progress")
PC = ("--enable-prefix-caching",)
PC_PS = (*PC, "--prefix-storage", "CPU", "--enable-prefix-sharing")
PIM = ("--enable-attn-offloading",)

LLAMA = "sharegpt_req300_rate10_llama"
MIXTRAL = "sharegpt_req300_rate10_mixtral"


@dataclass(frozen=True, slots=True)
class Experiment:
    """One run: where its inputs are, which flags it needs and what it writes."""

    figure: int
    hw: str | None  # sub-folder of the figure (Figure 5 only)
    run: str  # name used for the per-run files (`<run>_throughput.tsv`, ...)
    config: str  # under DATA/artifact_configs/figure_<N>/[<hw>/]
    dataset: str  # under DATA/datasets/, without .jsonl
    num_req: int
    flags: tuple[str, ...] = ()
    series: tuple[str, ...] = ()  # per-run TSVs, named in evaluation.series.PER_RUN
    label: str = ""  # column name in multi-run tables (component energy)
    result_name: str = ""  # default `<run>_result.csv`
    log_name: str = ""  # default `<run>_output.txt`

    @property
    def key(self) -> str:
        """`figure_<N>[/<hw>]/<run>`, unique in the table."""
        return "/".join(filter(None, (f"figure_{self.figure}", self.hw, self.run)))

    def folder(self, root: Path) -> Path:
        """`root/figure_<N>[/<hw>]`: the artifact layout this run's files live in."""
        return root / f"figure_{self.figure}" / (self.hw or "")

    @property
    def result_file(self) -> str:
        """File name of the per-request CSV under `results/`."""
        return self.result_name or f"{self.run}_result.csv"

    @property
    def log_file(self) -> str:
        """File name of the console log under `logs/`."""
        return self.log_name or f"{self.run}_output.txt"


def _fig5(hw: str, moe: str) -> list[Experiment]:
    return [Experiment(5, hw, run, f"{run}_config.json", data, 300, flags, ("throughput",))
            for run, data, flags in (("MD", LLAMA, ()), ("SD+PC", LLAMA, PC), ("PDD", LLAMA, ()),
                                     ("SM", moe, ()))]


def _fig6(tp: int) -> Experiment:
    return Experiment(6, None, f"power_tp{tp}", f"power_config_tp{tp}.json",
                      "sharegpt_pulse_req10_n3_delay60", 30, (), ("power",), f"TP {tp}",
                      f"power_result_tp{tp}.csv", f"power_output_tp{tp}.txt")


def _fig10(run: str, config: str, flags: tuple[str, ...], label: str) -> Experiment:
    return Experiment(10, None, f"{run}_b256", config, "fixed_in128_out512_req256_rate10", 256,
                      flags, ("throughput",), label)


EXPERIMENTS: tuple[Experiment, ...] = (
    *_fig5("A6000", "sharegpt_req300_rate10_phi"),
    *_fig5("H100", MIXTRAL),
    _fig6(1),
    _fig6(2),
    Experiment(7, None, "SD+PC", "SD+PC_config.json", "sharegpt_pulse_req50_n6_delay15_pc", 300,
               PC, ("prefix_single",)),
    Experiment(7, None, "MD+PC+PS", "MD+PC+PS_config.json",
               "sharegpt_pulse_req50_n6_delay15_pc", 300, PC_PS, ("prefix_multi",)),
    *(Experiment(8, None, run, f"{run}_config.json", MIXTRAL if run == "SM" else LLAMA, 300,
                 (), ("latency", "sim_time")) for run in ("SD", "MD", "PDD", "SM")),
    Experiment(9, None, "SD", "SD_config.json", LLAMA, 300, (), ("throughput", "latency")),
    _fig10("gpu_only", "gpu_only_config.json", (), "gpu-only"),
    _fig10("pim", "pim_config.json", PIM, "pim"),
    _fig10("pim_sbi", "pim_config.json", (*PIM, "--enable-sub-batch-interleaving"), "pim-sbi"),
)
# Tables over all runs of a figure, named in evaluation.series.PER_FIGURE.
FIGURE_TABLES = {6: ("component_energy",), 10: ("component_energy", "energy_per_token")}
# What each feature flag turns on, for the one-line notice when a build lacks the flag.
FEATURE_OF_FLAG = {
    "--enable-prefix-caching": "prefix caching",
    "--prefix-storage": "second-tier prefix storage",
    "--enable-prefix-sharing": "shared prefix pool",
    "--enable-attn-offloading": "PIM attention offload",
    "--enable-sub-batch-interleaving": "sub-batch interleaving",
}
FIGURES = tuple(sorted({e.figure for e in EXPERIMENTS}))


def of_figure(figure: int) -> list[Experiment]:
    """The runs of one figure, in table order."""
    return [e for e in EXPERIMENTS if e.figure == figure]
