"""Routing policies: assignments, seeded randomness, least-load and custom routers."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

import pytest

from inference_serving.request import Request
from inference_serving.router import make_router
from llmsim_core.errors import InputError


class EmptyQueue:
    def num_requests(self) -> int:
        return 0


@dataclass
class FakeInstance:
    index: int
    load: int = 0
    scheduler: EmptyQueue = field(default_factory=EmptyQueue)

    def outstanding_tokens(self) -> int:
        return self.load


def route_many(name: str, seed: int, n: int, ids: list[int]) -> list[int]:
    router = make_router(name, seed)
    candidates = [FakeInstance(i) for i in ids]
    return [router.route(Request(rid=i, arrival=i, prompt=1, output=1), candidates).index
            for i in range(n)]


def test_round_robin_cycles_in_order():
    assert route_many("RR", 0, 7, [0, 2, 5]) == [0, 2, 5, 0, 2, 5, 0]


def test_random_is_seeded_uniform_and_reproducible():
    first = route_many("RAND", 42, 3000, [0, 1, 2])
    assert first == route_many("RAND", 42, 3000, [0, 1, 2])
    assert first != route_many("RAND", 7, 3000, [0, 1, 2])
    counts = Counter(first)
    assert all(900 < counts[i] < 1100 for i in range(3))


def test_random_matches_python_random_stream_seeded_42():
    rng = random.Random(42)
    assert route_many("RAND", 42, 20, [0, 1, 2, 3]) == [rng.randrange(4) for _ in range(20)]


def test_least_load_picks_the_idlest_and_breaks_ties_by_id():
    router = make_router("LOAD", 0)
    req = Request(rid=0, arrival=0, prompt=1, output=1)
    assert router.route(req, [FakeInstance(0, 50), FakeInstance(1, 7),
                              FakeInstance(2, 9)]).index == 1
    assert router.route(req, [FakeInstance(3, 5), FakeInstance(1, 5)]).index == 1


class LastRouter:
    """A custom router used by the test below: always the last candidate."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def route(self, request, candidates):
        return candidates[-1]


def test_custom_router_is_loaded_from_a_dotted_path():
    router = make_router("CUSTOM", 5, "tests.test_router:LastRouter")
    assert router.inner.seed == 5
    assert router.route(Request(0, 0, 1, 1), [FakeInstance(0), FakeInstance(4)]).index == 4


@pytest.mark.parametrize("name,custom", [("FASTEST", None), ("CUSTOM", None),
                                         ("CUSTOM", "tests.test_router"),
                                         ("CUSTOM", "no.such.module:Router")])
def test_bad_router_choices_are_input_errors(name, custom):
    with pytest.raises(InputError):
        make_router(name, 0, custom)


def test_shipped_custom_router_example_runs(tmp_path):
    from tests.test_cli_errors import run_main

    out = tmp_path / "out.csv"
    done = run_main(["--dataset", "dataset/example_trace.jsonl", "--cluster-config",
                     "cluster_config/single_node_multi_instance.json",
                     "--request-routing-policy", "CUSTOM", "--custom-router",
                     "examples.custom_router:ShortestQueue", "--output", str(out)])
    assert done.returncode == 0, done.stderr
    ids = [line.split(",")[0] for line in out.read_text().splitlines()[1:]]
    assert Counter(ids) == {"0": 5, "1": 5}
