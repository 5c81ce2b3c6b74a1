"""Command-line entry: flags to options, then one run with the console and file observers."""

from __future__ import annotations

import os
import sys

from inference_serving.cluster_config import load_cluster_config
from inference_serving.flags import build_parser, options_from_args
from inference_serving.runner import console_observers, execute, file_observers
from inference_serving.sim_log import SimLogger
from llmsim_core.errors import InputError


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python main.py`."""
    args = build_parser().parse_args(argv)
    try:
        options = options_from_args(args)
        cluster = load_cluster_config(options.cluster_config)
        execute(options, cluster, SimLogger(options.log_level),
                lambda instances, total, fleet: [
                    *console_observers(options, instances, cluster, total, fleet),
                    *file_observers(options, fleet, instances, total)],
                note=lambda line: None if options.quiet else print(line, file=sys.stderr))
    except InputError as exc:
        print(exc.line(), file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader of our stdout went away (`| head`): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        print("error: interrupted, command line, run again", file=sys.stderr)
        return 130
    return 0
