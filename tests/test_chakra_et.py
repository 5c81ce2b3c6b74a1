"""Chakra .et encoder/decoder: round trips and byte identity with the `mlc-chakra` package."""

from __future__ import annotations

import importlib.util
import io

import pytest

from astra_sim.chakra_et import (
    CASYS_NUMBERING,
    UPSTREAM_NUMBERING,
    Attr,
    ChakraFormatError,
    GlobalMetadata,
    Node,
    encode_metadata,
    encode_node,
    read_et,
    write_et,
)

HAVE_CHAKRA = importlib.util.find_spec("chakra") is not None
needs_chakra = pytest.mark.skipif(not HAVE_CHAKRA, reason="mlc-chakra is not installed "
                                  "(pip install --no-deps mlc-chakra 'protobuf>=6.31.1')")


def sample_nodes() -> list[Node]:
    return [
        Node(1, "input_load", "MEM_LOAD_NODE", attrs=[Attr("tensor_size", "uint64", 16384),
                                                       Attr("is_cpu_op", "bool", False)]),
        Node(2, "q_proj", "COMP_NODE", data_deps=[1], duration_micros=12345,
             attrs=[Attr("num_ops", "int64", 10**12), Attr("tensor_size", "uint64", 0)]),
        Node(3, "allreduce", "COMM_COLL_NODE", data_deps=[2], ctrl_deps=[1],
             attrs=[Attr("comm_type", "int64", 0), Attr("comm_size", "int64", 1 << 20),
                    Attr("involved_dim", "bool", [True, False], is_list=True),
                    Attr("pg_name", "string", ""), Attr("comm_priority", "int32", -3)]),
        Node(4, "send", "COMM_SEND_NODE", data_deps=[3],
             attrs=[Attr("comm_src", "uint32", 0), Attr("comm_dst", "uint32", 5),
                    Attr("comm_tag", "uint32", 7), Attr("comm_size", "int64", 1 << 20),
                    Attr("weights", "double", 0.5), Attr("ratio", "float", 0.25),
                    Attr("offset", "sint64", -9), Attr("names", "string", ["a", "bc"], True),
                    Attr("sizes", "uint64", [1, 300, 70000], True),
                    Attr("empty", "bool", [], True)]),
    ]


def test_round_trip(tmp_path):
    path = tmp_path / "llm.0.et"
    nodes = sample_nodes()
    write_et(path, GlobalMetadata(), nodes)
    meta, back = read_et(path)
    assert meta.version == "0.0.4"
    assert back == nodes


def test_casys_numbering_differs_and_round_trips(tmp_path):
    comp = Node(9, "q_proj", "COMP_NODE", duration_micros=3)
    # The same COMP node is type 5 in the casys fork and 4 upstream, where 4 means PIM in casys.
    assert encode_node(comp, CASYS_NUMBERING) != encode_node(comp, UPSTREAM_NUMBERING)
    node = Node(9, "pim", "PIM_COMP_NODE", duration_micros=3)
    assert encode_node(node, CASYS_NUMBERING) == encode_node(comp, UPSTREAM_NUMBERING)\
        .replace(b"q_proj", b"pim").replace(b"\x12\x06", b"\x12\x03")
    path = tmp_path / "x.0.et"
    write_et(path, GlobalMetadata(), [node], CASYS_NUMBERING)
    assert read_et(path, CASYS_NUMBERING)[1] == [node]


def test_empty_metadata_and_nameless_nodes_are_refused():
    assert encode_metadata(GlobalMetadata())  # non-empty thanks to the version
    with pytest.raises(ChakraFormatError):
        encode_node(Node(0, "", "COMP_NODE"), UPSTREAM_NUMBERING)


def test_truncated_file_is_an_error(tmp_path):
    path = tmp_path / "t.0.et"
    write_et(path, GlobalMetadata(), sample_nodes())
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(ChakraFormatError):
        read_et(path)


def _official(nodes: list[Node]) -> bytes:
    from chakra.schema.protobuf import et_def_pb2 as pb
    from chakra.src.third_party.utils.protolib import encodeMessage

    buf = io.BytesIO()
    encodeMessage(buf, pb.GlobalMetadata(version="0.0.4"))
    for n in nodes:
        msg = pb.Node(id=n.id, name=n.name, type=UPSTREAM_NUMBERING[n.type],
                      duration_micros=n.duration_micros)
        msg.data_deps.extend(n.data_deps)
        msg.ctrl_deps.extend(n.ctrl_deps)
        for a in n.attrs:
            attr = msg.attr.add(name=a.name)
            if a.is_list:
                getattr(attr, f"{a.kind}_list").values.extend(a.value)
                if not a.value:
                    getattr(attr, f"{a.kind}_list").SetInParent()
            else:
                setattr(attr, f"{a.kind}_val", a.value)
        encodeMessage(buf, msg)
    return buf.getvalue()


@needs_chakra
def test_bytes_identical_to_mlc_chakra(tmp_path):
    path = tmp_path / "llm.0.et"
    write_et(path, GlobalMetadata(), sample_nodes())
    assert path.read_bytes() == _official(sample_nodes())


@needs_chakra
def test_mlc_chakra_decodes_our_files(tmp_path):
    from chakra.schema.protobuf import et_def_pb2 as pb
    from chakra.src.third_party.utils.protolib import decodeMessage, openFileRd

    path = tmp_path / "llm.0.et"
    write_et(path, GlobalMetadata(), sample_nodes())
    handle = openFileRd(str(path))
    meta = pb.GlobalMetadata()
    decodeMessage(handle, meta)
    names = []
    node = pb.Node()
    while decodeMessage(handle, node):
        names.append((node.name, list(node.data_deps)))
        node = pb.Node()
    assert meta.version == "0.0.4"
    assert names == [(n.name, n.data_deps) for n in sample_nodes()]
