"""Seeded fuzzing of configs, traces and flags: every run ends with exit 0 or one error line.

Each case mutates a valid cluster config, trace line or flag value (deleted or misspelt keys,
zero, negative, huge, non-finite or wrongly typed values) and runs `main.py` with
`--check-invariants`. A run must end within its time limit, with status 0 (invariants held)
or 2 with exactly one `error:` line, never a traceback, and must not leave its output behind
when it fails.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

from tests.conftest import REPO

SEED = 20261201
CASES = 36
BASE = json.loads((REPO / "cluster_config/single_node_single_instance.json").read_text())
LINE = {"input_toks": 40, "output_toks": 6, "arrival_time_ns": 1000}
ODD_VALUES = (0, -1, 1e300, -1e-300, "NaN", "x", None, [], {}, True, 2**70, 0.5)
FLAGS = (("--max-num-seqs", ("0", "-3", "1", "99999999999", "x")),
         ("--max-num-batched-tokens", ("0", "1", "-5", "1e9")),
         ("--block-size", ("0", "1", "4096")),
         ("--log-interval", ("0", "1e-9", "nan", "1e308", "0.01")),
         ("--seed", ("-1", "0", "1e3")),
         ("--num-req", ("0", "all", "-2", "3")),
         ("--fp", ("8", "12")))


def _paths(node: object, prefix: tuple = ()) -> list[tuple]:
    """Every key path of a JSON value."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            found.append((*prefix, key))
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


def _mutated_config(rng: random.Random) -> str:
    cfg = json.loads(json.dumps(BASE))
    path = rng.choice(_paths(cfg))
    parent = cfg
    for step in path[:-1]:
        parent = parent[step]
    key = path[-1]
    action = rng.choice(("delete", "value", "typo"))
    if action == "delete" and isinstance(parent, dict):
        del parent[key]
    elif action == "typo" and isinstance(parent, dict):
        parent[key[::-1]] = parent.pop(key)
    else:
        parent[key] = rng.choice(ODD_VALUES)
    return json.dumps(cfg).replace('"NaN"', "NaN")


def _mutated_line(rng: random.Random) -> str:
    line = dict(LINE)
    key = rng.choice(list(line))
    if rng.random() < 0.3:
        del line[key]
    else:
        line[key] = rng.choice(ODD_VALUES)
    return json.dumps(line).replace('"NaN"', "NaN")


def _case(rng: random.Random, tmp) -> list[str]:
    config, trace = tmp / "cluster.json", tmp / "trace.jsonl"
    config.write_text(json.dumps(BASE))
    lines = [json.dumps({**LINE, "arrival_time_ns": 1000 * i}) for i in range(3)]
    kind = rng.choice(("config", "trace", "flag"))
    args = []
    if kind == "config":
        config.write_text(_mutated_config(rng))
    elif kind == "trace":
        lines[rng.randrange(len(lines))] = _mutated_line(rng)
    else:
        flag, values = rng.choice(FLAGS)
        args = [flag, rng.choice(values)]
    trace.write_text("\n".join(lines) + "\n")
    return ["--cluster-config", str(config), "--dataset", str(trace), *args]


@pytest.mark.parametrize("case", range(CASES))
def test_mutated_inputs_end_cleanly(tmp_path, case):
    rng = random.Random(SEED * 1000 + case)
    args = _case(rng, tmp_path)
    out = tmp_path / "out.csv"
    done = subprocess.run([sys.executable, str(REPO / "main.py"), "--no-progress", "--quiet",
                           "--check-invariants", *args, "--output", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert "Traceback" not in done.stderr, (args, done.stderr)
    assert done.returncode in (0, 2), (args, done.returncode, done.stderr)
    if done.returncode == 2:
        errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1, (args, done.stderr)
        assert not out.exists()
    else:
        assert out.is_file()
