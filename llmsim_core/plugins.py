"""Loading user classes named on the command line (`--custom-router pkg.mod:Class`, ...).

Every `CUSTOM` policy goes through `load_class` (import, look up, check the interface) and
`construct` (call the constructor); mistakes in either become one-line `InputError`s that name
the flag, the class and what is wrong. `user_code_failed` does the same for an exception
raised later by a method of the class.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import inspect
import os
import sys
import traceback
from pathlib import Path
from typing import Any

from llmsim_core.errors import InputError, StopSignal


def _split(dotted: str, where: str) -> tuple[str, list[str]]:
    """`pkg.mod:Class` (or `pkg.mod.Class`) as the module name and the attribute path."""
    if ":" in dotted:
        module, _, attr = dotted.partition(":")
        attrs = attr.split(".")
    else:
        module, _, attr = dotted.rpartition(".")
        attrs = [attr]
    parts = [*module.split("."), *attrs]
    if not module or not all(part.isidentifier() for part in parts):
        raise InputError(f"'{dotted}' is not a class path", where,
                         "write it as package.module:Class")
    return module, attrs


def _import(module: str, where: str) -> Any:
    # The working directory is searched last, so a user's module there is found without
    # PYTHONPATH (also by the installed command) and cannot shadow an installed package.
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.append(cwd)
    try:
        return importlib.import_module(module)
    except BaseException as exc:  # any error of the user's module, even sys.exit
        if is_stop_signal(exc):
            raise
        raise InputError(f"cannot import module '{module}' ({describe(exc)})", where,
                         "check the module name and that it is importable from the working "
                         "directory or PYTHONPATH") from None


def source_files(dotted: str) -> list[Path]:
    """The source files of the module of `pkg.mod:Class` and of its packages, found on the
    import path without importing anything (outputs must not overwrite them); [] when the
    name is malformed or not found."""
    module = dotted.partition(":")[0] if ":" in dotted else dotted.rpartition(".")[0]
    if not module or not all(part.isidentifier() for part in module.split(".")):
        return []
    files: list[Path] = []
    search: list[str] | None = [*sys.path, os.getcwd()]
    for part in module.split("."):
        try:
            spec = importlib.machinery.PathFinder.find_spec(part, search)
        except (ImportError, ValueError):
            break
        if spec is None:
            break
        if spec.has_location and spec.origin:
            files.append(Path(spec.origin))
        search = list(spec.submodule_search_locations or [])
        if not search:
            break
    return files


def required_methods(base: type) -> list[str]:
    """The public methods an implementation of the interface `base` must offer."""
    return sorted(name for name, _ in inspect.getmembers(base, inspect.isfunction)
                  if not name.startswith("_"))


def load_class(dotted: str, flag: str, base: type | None = None) -> type:
    """Import the class `pkg.mod:Class` named by `flag`; with `base`, check that it offers
    every public method of that interface (Protocol or base class)."""
    where = f"{flag} {dotted}"
    module_name, attrs = _split(dotted, where)
    obj = _import(module_name, where)
    for depth, attr in enumerate(attrs):
        if not hasattr(obj, attr):
            owner = ".".join([module_name, *attrs[:depth]])
            raise InputError(f"'{owner}' has no attribute '{attr}'", where,
                             "check the class name (case matters)")
        obj = getattr(obj, attr)
    if not inspect.isclass(obj):
        raise InputError(f"'{dotted}' is a {type(obj).__name__}, not a class", where,
                         "name a class")
    if base is not None:
        missing = [name for name in required_methods(base)
                   if not callable(getattr(obj, name, None))]
        if missing:
            raise InputError(f"{obj.__name__} lacks {', '.join(missing)} of the "
                             f"{base.__name__} interface", where,
                             f"implement {base.__name__} of {base.__module__}")
    return obj


def origin(exc: BaseException) -> str:
    """` at FILE:LINE` of the innermost frame of `exc`'s traceback ('' without one)."""
    frames = traceback.extract_tb(exc.__traceback__)
    return f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""


def raised_in(exc: BaseException, dotted: str) -> bool:
    """True when the innermost frame of `exc` lies in the module of the user class `dotted`
    (an OSError of the class itself, not of the simulator's own reads and writes)."""
    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and any(Path(frames[-1].filename) == path
                                for path in source_files(dotted))


def is_stop_signal(exc: BaseException) -> bool:
    """True for the interrupt of a real Ctrl-C or termination signal (the command line raises
    those as `StopSignal`); a KeyboardInterrupt that user code raises itself, even one
    carrying a signal number, is a failure of that code."""
    return isinstance(exc, StopSignal)


def describe(exc: BaseException) -> str:
    """`Type: message` of an exception (`Type` alone without a message; a stand-in for a
    message that cannot even be printed)."""
    try:
        message = str(exc)
    except BaseException:  # a user exception whose __str__ fails
        message = "<a message that cannot be printed>"
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def shown(value: object, limit: int) -> str:
    """`repr(value)` cut to `limit` characters (a stand-in when user code's __repr__ fails)."""
    try:
        text = repr(value)
    except BaseException:  # a user object whose __repr__ fails
        return f"<a {type(value).__name__} that cannot be printed>"
    return text[:limit]


def user_code_failed(cls: type, call: str, exc: BaseException,
                     where: str) -> BaseException:
    """The one-line error for an exception (any, even `SystemExit` or a `BaseException`
    subclass) raised by `cls.call` of a user class; a stop signal is returned as it is, so
    that `raise user_code_failed(...)` lets the interrupt go on."""
    if is_stop_signal(exc):
        return exc
    return InputError(f"{cls.__name__}.{call} raised {describe(exc)}{origin(exc)}", where,
                      f"fix {cls.__module__}.{cls.__qualname__}")


def construct(cls: type, where: str, *args: Any) -> Any:
    """`cls(*args)`, with an exception of the constructor reported as an `InputError`."""
    try:
        return cls(*args)
    except InputError:
        raise
    except BaseException as exc:  # the user's constructor failed (even sys.exit)
        raise user_code_failed(cls, "__init__", exc, where) from None
