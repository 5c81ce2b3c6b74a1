"""Command-line entry: flags to options, then one run with the console and file observers."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from inference_serving.cluster_config import load_cluster_config
from inference_serving.flags import build_parser, options_from_args
from inference_serving.runner import console_observers, execute, file_observers
from inference_serving.sim_log import SimLogger
from llmsim_core.args import print_flag_warnings
from llmsim_core.errors import InputError

# Termination requests end the run like Ctrl-C: temp files are removed, no output is left.
# Each raises KeyboardInterrupt(signal number), which tells a real interrupt from one that a
# user class raises itself (that one is the class's failure, llmsim_core.plugins).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signum)


@contextmanager
def _stop_signals_interrupt() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP raise KeyboardInterrupt(signal number) for the duration
    (main thread only; a signal the parent set to be ignored stays ignored)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _interrupt) for sig in STOP_SIGNALS
                if signal.getsignal(sig) is not signal.SIG_IGN}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _silence_stdout() -> None:
    """Point stdout at the null device so the flush at exit cannot fail again."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _io_failure_line(exc: OSError) -> str:
    """The `error:` line for a read or write that failed after the up-front checks passed: a
    disk that filled up during the run, or a console (stdout) that cannot take more text."""
    where = exc.filename
    if where is None:
        try:
            sys.stdout.flush()
            where = "an output file, its temporary spool or standard output"
        except OSError:
            _silence_stdout()
            where = "standard output"
    return InputError(f"reading or writing failed ({exc.strerror or exc})", str(where),
                      "free space on that disk or send the output elsewhere, then run "
                      "again").line()


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python main.py`."""
    args = build_parser().parse_args(argv)
    with _stop_signals_interrupt():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    """One run from parsed flags; the exit status."""
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
        _silence_stdout()
        return 1
    except OSError as exc:
        print(_io_failure_line(exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        signum = exc.args[0] if exc.args and isinstance(exc.args[0], int) else signal.SIGINT
        print(f"error: interrupted ({signal.Signals(signum).name}), command line, run again",
              file=sys.stderr)
        return 128 + signum
    print_flag_warnings(args)
    return 0
