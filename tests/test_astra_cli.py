"""`python -m astra_sim` on exported traces, dialects, and bad input files."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from astra_sim import Dimension, SystemConfig
from astra_sim.chakra_et import CASYS_NUMBERING, read_et
from astra_sim.engine import Engine, EngineConfig
from astra_sim.export import export
from astra_sim.memory import MemorySystem
from tests.conftest import REPO
from tests.test_engine import allreduce, comp, mem, recv, send

MIB = 1 << 20
DIMS = (Dimension("FullyConnected", 4, 50, 500),)
CONFIG = EngineConfig(dims=DIMS, system=SystemConfig(local_mem_bw=1600))
MEMORY = {"remote_mem": {"memory-type": "PER_NODE_MEMORY_EXPANSION", "mem-latency": 100,
                         "mem-bw": 100, "num-devices": 1}}


def graphs() -> dict:
    out = {}
    for npu in range(4):
        nodes = [mem(1, 4096), comp(2, 1234 + 100 * npu, [1]), allreduce(3, MIB, [2]),
                 comp(4, 777, [3])]
        if npu == 0:
            nodes.append(send(5, 0, 3, MIB, [4]))
        if npu == 3:
            nodes.append(recv(5, 0, 3, MIB, [4]))
        out[npu] = nodes
    return out


def astra(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "astra_sim", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_exported_casys_traces_replay_to_the_in_process_times(tmp_path):
    memory = MemorySystem.from_json_dict(MEMORY, 4)
    prefix = export(tmp_path, graphs(), CONFIG, memory, dialect="casys")
    expected = Engine(CONFIG, MemorySystem.from_json_dict(MEMORY, 4)).replay(graphs())
    done = astra("--workload", str(prefix), "--network", str(tmp_path / "network.yml"),
                 "--system", str(tmp_path / "system.json"), "--memory",
                 str(tmp_path / "memory.json"), "--dialect", "casys")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines == [f"sys[{n}] finished, {expected.finish_ns[n]} cycles, exposed communication "
                     f"{expected.exposed_comm_ns[n]} cycles." for n in range(4)]
    assert read_et(tmp_path / "llm.0.et", CASYS_NUMBERING)[1][1].duration_micros == 1234


def test_upstream_dialect_files(tmp_path):
    export(tmp_path, graphs(), CONFIG, MemorySystem.from_json_dict(MEMORY, 4),
           dialect="upstream")
    nodes = read_et(tmp_path / "llm.3.et")[1]
    assert nodes[1].duration_micros == 1  # 1,534 ns -> 1 µs
    assert [a.kind for a in nodes[-1].attrs if a.name == "comm_src"] == ["uint32"]
    assert json.loads((tmp_path / "memory.json").read_text())["memory-type"] == "MEMORY_POOL"
    assert (tmp_path / "network.yml").read_text().startswith("topology: [ FullyConnected ]")
    system = json.loads((tmp_path / "system.json").read_text())
    assert system["all-reduce-implementation"] == ["ring"] and system["endpoint-delay"] == 10


@pytest.mark.skipif(importlib.util.find_spec("chakra") is None, reason="mlc-chakra is not "
                    "installed (pip install --no-deps mlc-chakra 'protobuf>=6.31.1')")
def test_mlc_chakra_reads_exported_traces(tmp_path):
    from chakra.schema.protobuf import et_def_pb2 as pb
    from chakra.src.third_party.utils.protolib import decodeMessage, openFileRd

    export(tmp_path, graphs(), CONFIG, dialect="upstream")
    handle = openFileRd(str(tmp_path / "llm.0.et"))
    meta = pb.GlobalMetadata()
    decodeMessage(handle, meta)
    kinds = []
    node = pb.Node()
    while decodeMessage(handle, node):
        kinds.append(node.type)
        node = pb.Node()
    assert kinds == [pb.MEM_LOAD_NODE, pb.COMP_NODE, pb.COMM_COLL_NODE, pb.COMP_NODE,
                     pb.COMM_SEND_NODE]


def write_case(tmp_path, network="topology: [ FullyConnected ]\nnpus_count: [ 4 ]\n"
               "bandwidth: [ 50 ]\nlatency: [ 500 ]\n", system=None, nodes=None):
    export(tmp_path, nodes or graphs(), CONFIG, MemorySystem.from_json_dict(MEMORY, 4),
           dialect="casys")
    (tmp_path / "network.yml").write_text(network)
    if system is not None:
        (tmp_path / "system.json").write_text(system)
    return ["--workload", str(tmp_path / "llm"), "--network", str(tmp_path / "network.yml"),
            "--system", str(tmp_path / "system.json"), "--memory",
            str(tmp_path / "memory.json"), "--dialect", "casys"]


@pytest.mark.parametrize("case", ["bad_topology", "unequal_lists", "bad_system_json",
                                  "bad_algorithm", "bad_memory", "cycle", "dangling",
                                  "missing_file"])
def test_bad_inputs_give_one_error_line(tmp_path, case):
    if case == "bad_topology":
        args = write_case(tmp_path, network="topology: [ Torus ]\nnpus_count: [ 4 ]\n"
                          "bandwidth: [ 50 ]\nlatency: [ 500 ]\n")
    elif case == "unequal_lists":
        args = write_case(tmp_path, network="topology: [ Ring, Ring ]\nnpus_count: [ 4 ]\n"
                          "bandwidth: [ 50 ]\nlatency: [ 500 ]\n")
    elif case == "bad_system_json":
        args = write_case(tmp_path, system="{oops")
    elif case == "bad_algorithm":
        args = write_case(tmp_path, system=json.dumps({"all-reduce-implementation": ["magic"]}))
    elif case == "bad_memory":
        args = write_case(tmp_path)
        (tmp_path / "memory.json").write_text(json.dumps({"memory-type": "HOLOGRAPHIC"}))
    elif case == "cycle":
        nodes = {n: [comp(1, 5, [2]), comp(2, 5, [1])] for n in range(4)}
        args = write_case(tmp_path, nodes=nodes)
    elif case == "dangling":
        nodes = {n: [comp(1, 5, [7])] for n in range(4)}
        args = write_case(tmp_path, nodes=nodes)
    else:
        args = write_case(tmp_path)
        (tmp_path / "llm.2.et").unlink()
    done = astra(*args)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ")
