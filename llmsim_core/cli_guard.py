"""What every command does at its edge: bad input, an interrupt, a full disk or a closed pipe
end it with one line on stderr and a status, never a traceback.

`guarded(main)` wraps a command's `main(argv) -> status`: an `InputError` prints its line
(status 2); Ctrl-C, SIGTERM and SIGHUP print `error: interrupted (SIG…)` (status 128 + the
signal; temporary files are removed on the way out by the writers' own cleanup); a read or
write that fails after the up-front checks prints one `error:` line (status 2); a reader of
stdout that went away (`| head`) ends the command quietly (status 1); a stdout closed from the
start is an `error:` line (status 2) before anything runs, and one that custom code closes
or replaces mid-run is an `error:` line (status 2) too. Text the console cannot encode is
escaped; a failing thread or finalizer of custom code is a `warning:` line, and `exit_process`
ends a command even when custom code left threads running.
"""

from __future__ import annotations

import errno
import functools
import io
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn

from llmsim_core.errors import InputError, StopSignal
from llmsim_core.plugins import describe

# Termination requests end a command like Ctrl-C.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _interrupt(signum: int, frame: object) -> None:
    raise StopSignal(signum)


@contextmanager
def stop_signals_interrupt() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP raise StopSignal(signal number) for the duration
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


def worker_signals() -> None:
    """In a forked worker process: leave Ctrl-C to the parent, which reports it once, and let
    a termination signal end the worker (not raise in it, as the inherited handler would)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def silence_stdout() -> None:
    """Point stdout at the null device so the flush at exit cannot fail again."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def console_takes_any_text() -> None:
    """Let stdout and stderr write characters their encoding lacks (the run header's bullets
    on an ASCII or Latin-1 console) as backslash escapes, not fail on them."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper) and not stream.closed:
            stream.reconfigure(errors="backslashreplace")


def stdout_closed() -> bool:
    """True when sys.stdout is a stream that was closed."""
    return bool(getattr(sys.stdout, "closed", False))


def io_failure_line(exc: OSError) -> str:
    """The `error:` line for a read or write that failed after the up-front checks passed: a
    disk that filled up during the run, or a console (stdout) that cannot take more text."""
    where = exc.filename
    if where is None:
        try:
            sys.stdout.flush()
            where = "an output file, its temporary spool or standard output"
        except (OSError, ValueError):
            silence_stdout()
            where = "standard output"
    full = exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
    return InputError(f"reading or writing failed ({exc.strerror or exc})", str(where),
                      "free space on that disk or send the output elsewhere, then run again"
                      if full else "check that path (a folder where a file should be, or the "
                      "reverse?) or send the output elsewhere, then run again").line()


def interrupted_line(exc: KeyboardInterrupt) -> tuple[str, int]:
    """The `error:` line and exit status of an interrupt."""
    signum = exc.args[0] if isinstance(exc, StopSignal) else signal.SIGINT
    return (f"error: interrupted ({signal.Signals(signum).name}), command line, run again",
            128 + signum)


def _failure(kind: type[BaseException], exc: BaseException | None) -> str:
    """`Type: message` of a failure a hook reports (it may come without the exception)."""
    return describe(exc) if exc is not None else kind.__name__


def _thread_failed(args: threading.ExceptHookArgs) -> None:
    """A thread (custom code's: the simulator starts none) that died of an exception: one
    warning line, not Python's traceback; the run goes on (SystemExit ends a thread quietly)."""
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    say(f"warning: thread {name!r} raised {_failure(args.exc_type, args.exc_value)}; the run "
        "went on without it")


def _unraisable(args: sys.UnraisableHookArgs) -> None:
    """An exception Python cannot raise (custom code's `__del__`): one warning line."""
    where = getattr(args.object, "__qualname__", type(args.object).__name__)
    say(f"warning: {where} raised {_failure(args.exc_type, args.exc_value)} where it could not "
        "stop the run (ignored)")


@contextmanager
def user_failures_warned() -> Iterator[None]:
    """Report exceptions of other threads and of finalizers as warning lines for the
    duration, not as Python's tracebacks."""
    previous = threading.excepthook, sys.unraisablehook
    threading.excepthook, sys.unraisablehook = _thread_failed, _unraisable
    try:
        yield
    finally:
        threading.excepthook, sys.unraisablehook = previous


def exit_process(status: int) -> NoReturn:
    """End the process with `status`, even when custom code left threads running that Python
    would wait for forever: those are named in a warning and stopped with the process."""
    left = [t.name for t in threading.enumerate()
            if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    if not left:
        sys.exit(status)
    say(f"warning: thread(s) {', '.join(map(repr, left))} started by custom code were still "
        "running at the end; they are stopped")
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    os._exit(status)


def say(line: str) -> None:
    """Print a line on stderr, even where custom code closed or replaced sys.stderr."""
    stream = sys.stderr
    if stream is not None and not getattr(stream, "closed", False):
        try:
            print(line, file=stream)
            stream.flush()
            return
        except (AttributeError, OSError, ValueError):
            pass
    os.write(2, (line + "\n").encode(errors="backslashreplace"))


def guarded(main: Callable[[list[str] | None], int]) -> Callable[[list[str] | None], int]:
    """`main` with the command edge of this module around it."""

    @functools.wraps(main)
    def run(argv: list[str] | None = None) -> int:
        if sys.stdout is None:  # started with descriptor 1 closed: every line would vanish
            say(InputError("standard output is closed", "command line",
                           "redirect it to a file or /dev/null instead").line())
            return 2
        console_takes_any_text()
        stdout = sys.stdout
        with stop_signals_interrupt(), user_failures_warned():
            try:
                status = main(argv)
            except InputError as exc:
                say(exc.line())
                return 2
            except BrokenPipeError:
                # The reader of our stdout went away (`| head`): stop quietly, as Unix tools do.
                silence_stdout()
                return 1
            except OSError as exc:
                say(io_failure_line(exc))
                return 2
            except KeyboardInterrupt as exc:
                line, status = interrupted_line(exc)
                say(line)
                return status
            except ValueError:
                if not stdout_closed():
                    raise
                # Custom code (a router, scheduler or perf model) closed sys.stdout mid-run.
                say(InputError("standard output was closed during the run", "standard output",
                               "do not close sys.stdout in custom code").line())
                return 2
        if sys.stdout is not stdout:  # custom code replaced it: the console text went astray
            sys.stdout = stdout
            say(InputError("standard output was replaced during the run, so part of the "
                           "console text is missing", "standard output",
                           "do not replace sys.stdout in custom code").line())
            return 2
        return status

    return run
