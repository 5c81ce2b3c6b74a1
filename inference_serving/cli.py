"""Command-line entry: flags to options, then one run with the console and file observers."""

from __future__ import annotations

import sys

from inference_serving.cluster_config import load_cluster_config
from inference_serving.flags import build_parser, options_from_args, overridden_flags
from inference_serving.runner import console_observers, execute, file_observers
from inference_serving.sim_log import SimLogger
from llmsim_core.args import print_flag_warnings
from llmsim_core.cli_guard import exit_process, guarded


@guarded
def main(argv: list[str] | None = None) -> int:
    """Entry point of `python main.py`: one run from the flags; the exit status."""
    args = build_parser().parse_args(argv)
    options = options_from_args(args)
    cluster = load_cluster_config(options.cluster_config)
    args._warnings.extend(overridden_flags(args, cluster))  # shown once the run has succeeded
    execute(options, cluster, SimLogger(options.log_level),
            lambda instances, total, fleet: [
                *console_observers(options, instances, cluster, total, fleet),
                *file_observers(options, fleet, instances, total)],
            note=lambda line: None if options.quiet else print(line, file=sys.stderr))
    print_flag_warnings(args)
    return 0


def entry() -> None:
    """The process entry (`python main.py`, the `llmservingsim` script): run, then exit."""
    exit_process(main())
