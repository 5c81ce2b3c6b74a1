"""Optional ns-3 backend: a clear error without the extra; packet-level timing with it."""

from __future__ import annotations

import importlib.util

import pytest

from astra_sim import Dimension, SystemConfig, collective_ns
from tests.test_cli_errors import run_main

HAVE_NS3 = importlib.util.find_spec("ns") is not None


@pytest.mark.skipif(HAVE_NS3, reason="the ns3 extra is installed")
def test_missing_extra_is_one_error_line():
    done = run_main(["--cluster-config", "cluster_config/single_node_tp2_instance.json",
                     "--dataset", "dataset/example_trace.jsonl", "--network-backend", "ns3"])
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1
    assert "ns3" in lines[0] and "pip install" in lines[0]


def test_single_npu_instances_do_not_need_ns3():
    done = run_main(["--dataset", "dataset/example_trace.jsonl", "--network-backend", "ns3"])
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(not HAVE_NS3, reason="the ns3 extra is not installed "
                    "(pip install -e '.[ns3]')")
def test_packet_level_all_reduce_is_slower_than_the_ideal_and_cached():
    from astra_sim.ns3_backend import ns3_collective_ns, simulate_messages

    dims = (Dimension("FullyConnected", 4, 50, 500),)
    system = SystemConfig(local_mem_bw=1600)
    first = ns3_collective_ns("all_reduce", 1 << 20, dims, system)
    # TCP slow start and headers: never faster than the analytical store-and-forward time.
    assert first >= collective_ns("all_reduce", 1 << 20, dims, system)
    hits = simulate_messages.cache_info().hits
    assert ns3_collective_ns("all_reduce", 1 << 20, dims, system) == first
    assert simulate_messages.cache_info().hits >= hits
