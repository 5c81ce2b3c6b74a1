"""Simulate an LLM serving cluster: `python main.py --help`."""

import sys
from pathlib import Path

# Run from a checkout without `pip install`: the engine package sits in astra-sim/, whose name is
# not importable. Appended, so an installed copy still wins.
sys.path.append(str(Path(__file__).resolve().parent / "astra-sim"))

try:
    from inference_serving.cli import entry
except ModuleNotFoundError as exc:
    sys.stderr.write(f"error: the Python package {exc.name!r} is missing, {sys.executable}, "
                     "run ./run.sh (it sets up .venv) or pip install -e . first\n")
    sys.exit(2)

if __name__ == "__main__":
    entry()
