"""The byte-level reading of generator-written trace lines agrees with the full JSON parse."""

from __future__ import annotations

import json
import random
import re

import pytest

from inference_serving import dataset_reader
from inference_serving.dataset_reader import load_requests
from llmsim_core.errors import InputError

HEAD = b'{"input_toks": 2, "output_toks": 2, "arrival_time_ns": 5, "input_tok_ids": '
NEVER = re.compile(rb"(?!)")


def _read(path, fast: bool, monkeypatch) -> tuple:
    """What load_requests makes of `path` (with ids), with or without the byte-level path."""
    with monkeypatch.context() as patch:
        if not fast:
            patch.setattr(dataset_reader, "_CANONICAL", NEVER)
            patch.setattr(dataset_reader, "_WITH_IDS", NEVER)
        try:
            table, _ = load_requests(path, 10, 100, None, True)
        except InputError as exc:
            return ("error", str(exc))
    return (list(table.prompt), list(table.output), list(table.arrival),
            [None if ids is None else list(ids) for ids in table.token_ids])


@pytest.mark.parametrize("tail", [
    b"[1, 2]}", b'[1, 2], "output_tok_ids": [3, 4]}', b"[999999999, 10]}\r\n",
])
def test_generator_lines_take_the_byte_level_path(tail):
    assert dataset_reader._plain_ids(HEAD + tail) is not None


@pytest.mark.parametrize("tail", [
    b"[1,, 2]}", b"[1, 2,]}", b"[1, -2]}", b"[1, 2.0]}", b"[1, 01]}", b"[1 2]}", b"[1,  2]}",
    b"[1, 9999999999]}", b"null}", b'[1, 2], "x": [3]}', b"[1, 2]} [3]}", b"[\n1, 2]}",
    b'[1, 2], "input_tok_ids": [1, 2]}', b'[1, 2], "output_tok_ids": null}',
    b'[1, 2], "output_tok_ids": [3, 4], "output_tok_ids": [3, 4]}', b"[0, 1]}",
])
def test_other_lines_take_the_full_parse(tail):
    assert dataset_reader._plain_ids(HEAD + tail) is None


def test_both_paths_read_random_lines_alike(tmp_path, monkeypatch):
    """Counts off by one, empty lists, ids of 10 digits, huge arrivals: same values or the
    same error either way."""
    rng = random.Random(7)
    path = tmp_path / "t.jsonl"
    for _ in range(600):
        n_in, n_out = rng.choice([0, 1, 2, 3]), rng.choice([0, 1, 2, 3])
        record = {"input_toks": n_in + rng.choice([0, 0, 1]), "output_toks": n_out,
                  "arrival_time_ns": rng.choice([0, 5, 10**18, 10**19]),
                  "input_tok_ids": [rng.choice([0, 5, 12, 999999999, 10**9, 2**31])
                                    for _ in range(max(0, n_in + rng.choice([-1, 0, 0, 1])))]}
        if rng.random() < 0.5:
            record["output_tok_ids"] = [rng.choice([1, 7]) for _ in
                                        range(max(0, n_out + rng.choice([-1, 0, 0, 1])))]
        path.write_text(json.dumps(record) + "\n")
        assert _read(path, True, monkeypatch) == _read(path, False, monkeypatch), record
