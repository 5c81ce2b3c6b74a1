"""Output paths checked before the run: a failure after the simulation would waste it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from inference_serving.options import RunOptions
from llm_profile.calibrate import CALIBRATION_DIR
from llm_profile.hardware_catalog import CATALOGUE_DIR
from llmsim_core.errors import InputError
from llmsim_core.plugins import source_files

# The files --plot-dir writes (plots.py draws them); power.png only when power is modelled.
PLOT_FILES = ("throughput.png", "ttft_cdf.png", "tpot_cdf.png", "e2e_cdf.png", "requests.png",
              "memory.png")
POWER_PLOT = "power.png"
# The batch folders --export-chakra writes, instance<i>_batch<b>.
EXPORT_PATTERN = "instance*_batch*"


def _existing_ancestor(path: Path, flag: str) -> Path:
    """The nearest existing folder above `path`; an error if a file is in the way."""
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"{flag} lies under {parent}, which is a file, not a folder",
                                 f"{flag} {path}", "choose a path inside a folder")
            return parent
    raise InputError("no existing folder above the path", f"{flag} {path}", "fix the path")


def _writable(folder: Path, path: Path, flag: str) -> None:
    """Probe with a real temp file: permission bits say nothing for root or read-only mounts."""
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".llmsim-probe-")
    except OSError as exc:
        raise InputError(f"cannot write into {folder} ({exc.strerror})", f"{flag} {path}",
                         "choose a writable folder") from None
    os.close(fd)
    os.unlink(probe)


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    return a.exists() and b.exists() and os.path.samefile(a, b)  # hard links


def _special(path: Path) -> bool:
    """True for an existing path that is not a regular file: a device (/dev/null), FIFO or
    socket. An output is renamed into place, which would replace the node itself."""
    return path.exists() and not path.is_dir() and not path.is_file()


def _check_file(flag: str, path: Path, inputs: list[Path], roots: list[Path]) -> None:
    """One output file against the inputs, the input roots and the file system."""
    if path.is_dir():
        raise InputError(f"{flag} names a directory", f"{flag} {path}",
                         "give a file path, e.g. <dir>/results.csv")
    if _special(path):
        raise InputError(f"{flag} names a device, FIFO or socket, not a regular file (writing "
                         "it would replace the node)", f"{flag} {path}",
                         "give a regular file path, or drop the flag to skip this output")
    for source in inputs:
        if _same_file(path, source):
            raise InputError(f"{flag} is an input of this run; writing it would destroy "
                             "the input", f"{flag} {path}", "write the output elsewhere")
    if path.suffix in (".py", ".pyc") and path.exists():  # no output of ours is Python code
        raise InputError(f"{flag} names existing Python source; writing it would destroy that "
                         "code", f"{flag} {path}", "write the output elsewhere")
    resolved = path.resolve()
    if path.exists() and any(resolved.is_relative_to(root) for root in roots):
        raise InputError(f"{flag} would overwrite a file of an input folder (model configs, "
                         "profiles, PIM configs, calibration tables or the hardware catalogue)",
                         f"{flag} {path}", "write the output elsewhere")
    _writable(_existing_ancestor(path, flag), path, flag)


def _path_failed(flag: str, path: Path, exc: BaseException) -> InputError:
    """An OSError (name too long, ...) or a symlink loop met while checking an output path."""
    what = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return InputError(f"cannot use the path ({what})", f"{flag} {path}", "choose another path")


def check_output_paths(files: Mapping[str, Path | None], inputs: Iterable[Path | None],
                       input_roots: Iterable[Path] = (), export_dir: Path | None = None) -> None:
    """Reject an output file that is a directory, lies under a file, sits in a folder that
    cannot be written, or is an input of the run (or an existing file under an input root);
    and an export folder that is a file or cannot be created."""
    inputs = [p for p in inputs if p is not None and p.exists()]
    roots = [r.resolve() for r in input_roots if r.is_dir()]
    for flag, path in files.items():
        if path is None:
            continue
        try:
            _check_file(flag, path, inputs, roots)
        except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (Path.resolve)
            raise _path_failed(flag, path, exc) from None
    if export_dir is not None:
        check_output_folder(export_dir, "--export-chakra")


def check_output_folder(path: Path, flag: str) -> None:
    """Reject an output folder that is a file or cannot be created or written."""
    try:
        _check_folder(path, flag)
    except OSError as exc:
        raise _path_failed(flag, path, exc) from None


def _check_folder(path: Path, flag: str) -> None:
    """Reject an output folder that is a file or cannot be created or written."""
    if path.exists() and not path.is_dir():
        raise InputError(f"{flag} names a file, not a folder", f"{flag} {path}",
                         "give a folder path")
    folder = path if path.is_dir() else _existing_ancestor(path, flag)
    _writable(folder, path, flag)


def _plugin_files(options: RunOptions) -> list[Path]:
    """The source files of the CUSTOM classes the run loads: inputs too."""
    return [path for dotted in (options.custom_router, options.custom_scheduler,
                                options.custom_expert_router, options.custom_perf_model)
            if dotted for path in source_files(dotted)]


def check_run_paths(options: RunOptions) -> None:
    """Check every output path of a run against its inputs and each other before anything is
    simulated: the output files, each plot file of --plot-dir, and the export folder."""
    files: dict[str, Path | None] = {"--output": options.output,
                                     "--throughput-output": options.throughput_output,
                                     "--metrics-json": options.metrics_json,
                                     "--trace-output": options.trace_output}
    if options.plot_dir is not None:
        check_output_folder(options.plot_dir, "--plot-dir")
        files |= {f"--plot-dir {name}": options.plot_dir / name
                  for name in (*PLOT_FILES, POWER_PLOT)}
    roots = (options.model_configs, options.perf_models, CALIBRATION_DIR, CATALOGUE_DIR,
             *((options.pim_configs,) if options.attn_offloading else ()))
    check_output_paths(files,
                       inputs=(options.cluster_config, options.dataset, options.astra_sim_bin,
                               *_plugin_files(options)),
                       input_roots=roots, export_dir=options.export_chakra)
    _distinct(files)
    _folders_apart(files, options.plot_dir, options.export_chakra, roots)
    if options.export_chakra is not None:
        _fresh_export_folder(options.export_chakra)


def _distinct(files: Mapping[str, Path | None]) -> None:
    """No two outputs may be the same file."""
    seen: dict[Path, str] = {}
    for flag, path in files.items():
        if path is None:
            continue
        resolved = path.resolve()
        if resolved in seen:
            raise InputError(f"{seen[resolved]} and {flag} would write the same file",
                             f"{flag} {path}", "give each output a distinct path")
        seen[resolved] = flag


def _folders_apart(files: Mapping[str, Path | None], plot_dir: Path | None,
                   export_dir: Path | None, roots: Iterable[Path]) -> None:
    """The output folders lie outside every input folder, and no output file is the plot
    folder or lies in the export folder (which the export fills with batch folders)."""
    folders = {"--plot-dir": plot_dir, "--export-chakra": export_dir}
    for flag, folder in folders.items():
        if folder is None:
            continue
        resolved = folder.resolve()
        for root in roots:
            if root.is_dir() and resolved.is_relative_to(root.resolve()):
                raise InputError(f"{flag} lies inside an input folder ({root})",
                                 f"{flag} {folder}", "write the output elsewhere")
    for flag, path in files.items():
        if path is None or flag.startswith("--plot-dir "):
            continue
        resolved = path.resolve()
        if plot_dir is not None and resolved == plot_dir.resolve():
            raise InputError(f"{flag} names the --plot-dir folder", f"{flag} {path}",
                             "give the file and the plot folder different paths")
        if export_dir is not None and resolved.is_relative_to(export_dir.resolve()):
            raise InputError(f"{flag} lies inside the --export-chakra folder, which the export "
                             "fills", f"{flag} {path}", "write the output elsewhere")


def _fresh_export_folder(folder: Path) -> None:
    """The export writes only batch folders it creates: a folder already holding an export
    (or anything under those names) is refused, so nothing of the user's is replaced."""
    if not folder.is_dir():
        return
    taken = sorted(p.name for p in folder.glob(EXPORT_PATTERN))
    if taken:
        raise InputError(f"the folder already holds batch folders of an export ({taken[0]}"
                         f"{' …' if len(taken) > 1 else ''})", f"--export-chakra {folder}",
                         "choose a new or empty folder, or remove the old export")
