"""A non-editable install into a clean venv runs `llmservingsim` from any directory.

The wheel is built offline from a copy of the tracked tree (a stale build/ in the checkout could
otherwise supply files the package no longer declares) and installed with pip into a venv that
has no pip, no system site-packages and no access to the checkout. numpy, the one dependency,
is copied from this interpreter's installed distribution so the test needs no index.
"""

from __future__ import annotations

import csv
import importlib.metadata
import json
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow

EXAMPLE_TRACE = "dataset/example_sharegpt_req100_rate10.jsonl"
# The source folder of each installed package (pyproject.toml [tool.setuptools.package-dir]).
SOURCES = {
    "llmsim_core": "llmsim_core",
    "inference_serving": "inference_serving",
    "llm_profile": "llm_profile",
    "astra_sim": "astra-sim/astra_sim",
    "llmservingsim_data/model_config": "model_config",
    "llmservingsim_data/cluster_config": "cluster_config",
    "llmservingsim_data/dataset": "dataset",
    "llmservingsim_data/pim_config": "pim_config",
}
# Data every installed copy must carry: installed folder -> glob of its files in the checkout.
BUNDLED = {
    "llmservingsim_data/model_config": "*/*.json",
    "llmservingsim_data/cluster_config": "*.json",
    "llmservingsim_data/dataset": "*.jsonl",
    "llmservingsim_data/pim_config": "*.ini",
    "llm_profile/hardware": "*.json",
    "llm_profile/calibration": "*.json",
}
# perf_models/ may hold large user profiles that are not part of the package.
SKIP_DIRS = {".git", ".venv", "build", "output", "perf_models", "__pycache__", ".pytest_cache",
             ".ruff_cache"}


def _copy_tree(dst: Path) -> None:
    """The checkout without virtual environments, caches and build leftovers."""
    def ignore(_: str, names: list[str]) -> set[str]:
        return {n for n in names if n in SKIP_DIRS or n.endswith((".egg-info", ".pyc"))}
    shutil.copytree(REPO, dst, ignore=ignore)


def _copy_numpy(site: Path) -> None:
    """Install numpy into `site` by copying this interpreter's installed files (no index)."""
    dist = importlib.metadata.distribution("numpy")
    for rel in dist.files or ():
        src = Path(dist.locate_file(rel))
        if rel.parts[0] != ".." and src.is_file():
            (site / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, site / rel)


def _run(cmd: list[str | Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean venv with the project installed from a wheel; returns the venv directory."""
    pytest.importorskip("setuptools", reason="building the wheel offline needs setuptools")
    tmp = tmp_path_factory.mktemp("packaging")
    _copy_tree(tmp / "src")
    built = _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index",
                  "--no-build-isolation", "--wheel-dir", tmp / "wheels", tmp / "src"], tmp)
    assert built.returncode == 0, built.stderr
    env_dir = tmp / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    wheel = next((tmp / "wheels").glob("*.whl"))
    done = _run([sys.executable, "-m", "pip", "--python", python, "install", "--quiet",
                 "--no-deps", "--no-index", wheel], tmp)
    assert done.returncode == 0, done.stderr
    _copy_numpy(_site(env_dir))
    return env_dir


def _site(env_dir: Path) -> Path:
    version = sysconfig.get_python_version()
    return env_dir / "lib" / f"python{version}" / "site-packages"


def test_installed_command_runs_bundled_example_from_elsewhere(installed: Path,
                                                               tmp_path: Path) -> None:
    """Default cluster config, model config and the named trace come from the install.

    The CSV equals the checkout's for the same flags, so the bundled files are the same data.
    """
    flags = ["--dataset", EXAMPLE_TRACE, "--num-req", "5", "--output", "out.csv"]
    run = _run([installed / "bin" / "llmservingsim", *flags], tmp_path)
    assert run.returncode == 0, run.stderr
    with (tmp_path / "out.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5
    trace = [json.loads(line) for line in (REPO / EXAMPLE_TRACE).read_text().splitlines()[:5]]
    assert sorted((int(r["request id"]), int(r["input"])) for r in rows) == [
        (i, t["input_toks"]) for i, t in enumerate(trace)]
    (tmp_path / "checkout").mkdir()
    ref = _run([sys.executable, REPO / "main.py", *flags], tmp_path / "checkout")
    assert ref.returncode == 0, ref.stderr
    assert (tmp_path / "out.csv").read_bytes() == (tmp_path / "checkout" / "out.csv").read_bytes()


def test_installed_trace_generator_reproduces_the_example(installed: Path,
                                                          tmp_path: Path) -> None:
    """`python -m llmservingsim_data.dataset.generate` ships and regenerates the bundled trace."""
    run = _run([installed / "bin" / "python", "-m", "llmservingsim_data.dataset.generate",
                "--out", "trace.jsonl", "--num-req", "100", "--rate", "10", "--seed", "42"],
               tmp_path)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "trace.jsonl").read_bytes() == (REPO / EXAMPLE_TRACE).read_bytes()


def test_installed_modules_come_from_the_venv(installed: Path, tmp_path: Path) -> None:
    """The run above used the installed copy, not the checkout."""
    code = ("import llmsim_core.paths as p, inference_serving; "
            "print(p.DATA_ROOT); print(inference_serving.__file__)")
    out = _run([installed / "bin" / "python", "-c", code], tmp_path)
    assert out.returncode == 0, out.stderr
    data_root, module = out.stdout.split()
    assert Path(data_root) == _site(installed) / "llmservingsim_data"
    assert Path(module).is_relative_to(installed)


def test_every_module_and_bundled_file_is_installed(installed: Path) -> None:
    """The wheel carries each tracked module and data file of the mapped source folders."""
    site = _site(installed)
    for target, source in SOURCES.items():
        want = {p.relative_to(REPO / source) for p in (REPO / source).rglob("*.py")}
        have = {p.relative_to(site / target) for p in (site / target).rglob("*.py")}
        assert want <= have, f"{target}: missing {sorted(map(str, want - have))}"
    for target, pattern in BUNDLED.items():
        source = REPO / SOURCES.get(target, target)
        want = {p.relative_to(source) for p in source.glob(pattern)}
        have = {p.relative_to(site / target) for p in (site / target).glob(pattern)}
        assert want and want == have, f"{target}: {sorted(map(str, want ^ have))}"
