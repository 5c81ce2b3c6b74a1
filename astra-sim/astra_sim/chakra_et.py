"""Chakra execution-trace (.et) files: a dependency-free protobuf encoder and decoder.

A file is a stream of varint-length-delimited messages: one GlobalMetadata, then Nodes
(engine.md §2). The encoder follows protobuf's Python serializer byte for byte: fields in
ascending number, proto3 defaults omitted, oneof attribute values always written, packed
numeric repeats.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

# Node types as the engine names them; the numbering is a dialect (engine.md §2.4).
UPSTREAM_NUMBERING = {"INVALID_NODE": 0, "METADATA_NODE": 1, "MEM_LOAD_NODE": 2,
                      "MEM_STORE_NODE": 3, "COMP_NODE": 4, "COMM_SEND_NODE": 5,
                      "COMM_RECV_NODE": 6, "COMM_COLL_NODE": 7}
CASYS_NUMBERING = {"INVALID_NODE": 0, "METADATA_NODE": 1, "MEM_LOAD_NODE": 2,
                   "MEM_STORE_NODE": 3, "PIM_COMP_NODE": 4, "COMP_NODE": 5, "COMM_SEND_NODE": 6,
                   "COMM_RECV_NODE": 7, "COMM_COLL_NODE": 8}

COLLECTIVE_TYPES = {"ALL_REDUCE": 0, "REDUCE": 1, "ALL_GATHER": 2, "GATHER": 3, "SCATTER": 4,
                    "BROADCAST": 5, "ALL_TO_ALL": 6, "REDUCE_SCATTER": 7,
                    "REDUCE_SCATTER_BLOCK": 8, "BARRIER": 9}

# AttributeProto oneof: kind -> (scalar field number, wire encoding). The list variant of a kind
# is the next field number.
_ATTR_KINDS = {
    "double": (3, "f64"), "float": (5, "f32"), "int32": (7, "int"), "int64": (9, "int"),
    "uint32": (11, "uint"), "uint64": (13, "uint"), "sint32": (15, "zigzag"),
    "sint64": (17, "zigzag"), "fixed32": (19, "u32"), "fixed64": (21, "u64"),
    "sfixed32": (23, "s32"), "sfixed64": (25, "s64"), "bool": (27, "uint"),
    "string": (29, "str"), "bytes": (31, "bytes"),
}
_BY_FIELD = {num: kind for kind, (num, _) in _ATTR_KINDS.items()}
_FIXED = {"f64": "<d", "f32": "<f", "u32": "<I", "u64": "<Q", "s32": "<i", "s64": "<q"}


class ChakraFormatError(ValueError):
    """A file is not a well-formed Chakra execution trace."""


@dataclass(slots=True)
class Attr:
    """One AttributeProto: a name and a typed scalar or list value (`kind` like `int64`)."""

    name: str
    kind: str
    value: object
    is_list: bool = False


@dataclass(slots=True)
class Node:
    """One Chakra node; `type` is the dialect-free name (e.g. `COMP_NODE`)."""

    id: int
    name: str
    type: str
    data_deps: list[int] = field(default_factory=list)
    ctrl_deps: list[int] = field(default_factory=list)
    duration_micros: int = 0
    start_time_micros: int = 0
    attrs: list[Attr] = field(default_factory=list)

    def attr(self, name: str, default: object = None) -> object:
        """Value of the attribute called `name`, or `default`."""
        for a in self.attrs:
            if a.name == name:
                return a.value
        return default


@dataclass(slots=True)
class GlobalMetadata:
    """The first record of every file (must not serialize to zero bytes)."""

    version: str = "0.0.4"
    attrs: list[Attr] = field(default_factory=list)


# --- encoding ---------------------------------------------------------------------------------
# Exports write millions of nodes: varints below 2**14 and field keys come from tables, and scalar
# attributes (the same few names and values over and over) are encoded once per run.

_SHORT = [bytes((v,)) if v < 0x80 else bytes((v & 0x7F | 0x80, v >> 7)) for v in range(0x4000)]


def _varint(value: int) -> bytes:
    if 0 <= value < 0x4000:
        return _SHORT[value]
    if value < 0:
        value += 1 << 64  # negative int32/int64: ten-byte two's complement
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _key(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _len_field(number: int, payload: bytes) -> bytes:
    return _key(number, 2) + _varint(len(payload)) + payload


def _scalar(encoding: str, value: object) -> tuple[int, bytes]:
    """(wire type, bytes) of one value."""
    if encoding in ("int", "uint"):
        return 0, _varint(int(value))
    if encoding == "zigzag":
        v = int(value)
        return 0, _varint((v << 1) ^ (v >> 63) if v < 0 else v << 1)
    if encoding in _FIXED:
        fmt = _FIXED[encoding]
        return (1 if fmt[-1] in "dQq" else 5), struct.pack(fmt, value)
    raw = value.encode() if encoding == "str" else bytes(value)
    return 2, _varint(len(raw)) + raw


def _encode_attr(a: Attr) -> bytes:
    if a.kind not in _ATTR_KINDS:
        raise ChakraFormatError(f"unknown attribute kind {a.kind!r}")
    number, encoding = _ATTR_KINDS[a.kind]
    out = _len_field(1, a.name.encode()) if a.name else b""
    if a.is_list:
        values = list(a.value)
        if encoding in ("str", "bytes"):
            body = b"".join(_key(1, 2) + _scalar(encoding, v)[1] for v in values)
        else:
            packed = b"".join(_scalar(encoding, v)[1] for v in values)
            body = _len_field(1, packed) if packed else b""
        return out + _len_field(number + 1, body)
    wire, payload = _scalar(encoding, a.value)
    return out + _key(number, wire) + payload


_CACHE_MAX = 1 << 16  # entries kept per cache; anything beyond is encoded each time
_ATTR_FIELDS: dict[tuple, bytes] = {}


def _attr_field(a: Attr) -> bytes:
    """Field 10 of a Node: one attribute, length-prefixed (scalars cached by value)."""
    if a.is_list or type(a.value) not in (int, str, bool):  # floats: 0.0 == -0.0, NaN != NaN
        return _len_field(10, _encode_attr(a))
    key = (a.name, a.kind, type(a.value), a.value)  # the type keeps 1 and True apart
    encoded = _ATTR_FIELDS.get(key)
    if encoded is None:
        encoded = _len_field(10, _encode_attr(a))
        if len(_ATTR_FIELDS) < _CACHE_MAX:
            _ATTR_FIELDS[key] = encoded
    return encoded


def encode_metadata(meta: GlobalMetadata) -> bytes:
    """Serialize a GlobalMetadata message."""
    out = _len_field(1, meta.version.encode()) if meta.version else b""
    return out + b"".join(_len_field(2, _encode_attr(a)) for a in meta.attrs)


_ID, _TYPE, _START, _DURATION = b"\x08", b"\x18", b"\x30", b"\x38"
_NAMES: dict[str, bytes] = {}  # node name -> encoded field 2 (layer names repeat every batch)
_CTRL_DEPS, _DATA_DEPS = b"\x22", b"\x2a"


def encode_node(node: Node, numbering: dict[str, int]) -> bytes:
    """Serialize a Node message with the dialect's node-type numbering."""
    if not node.name:
        raise ChakraFormatError(f"node {node.id} needs a non-empty name")
    varint = _varint
    parts = []
    if node.id:
        parts += (_ID, varint(node.id))
    name = _NAMES.get(node.name)
    if name is None:
        name = _len_field(2, node.name.encode())
        if len(_NAMES) < _CACHE_MAX:
            _NAMES[node.name] = name
    parts.append(name)
    type_value = numbering[node.type]
    if type_value:
        parts += (_TYPE, varint(type_value))
    for key, deps in ((_CTRL_DEPS, node.ctrl_deps), (_DATA_DEPS, node.data_deps)):
        if deps:
            packed = b"".join([varint(d) for d in deps])
            parts += (key, varint(len(packed)), packed)
    if node.start_time_micros:
        parts += (_START, varint(node.start_time_micros))
    if node.duration_micros:
        parts += (_DURATION, varint(node.duration_micros))
    parts += [_attr_field(a) for a in node.attrs]
    return b"".join(parts)


def write_et(path: Path, meta: GlobalMetadata, nodes: Iterable[Node],
             numbering: dict[str, int] = UPSTREAM_NUMBERING) -> None:
    """Write one NPU's trace file."""
    records = [encode_metadata(meta), *(encode_node(n, numbering) for n in nodes)]
    path.write_bytes(b"".join([part for record in records
                               for part in (_varint(len(record)), record)]))


# --- decoding ---------------------------------------------------------------------------------

def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ChakraFormatError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:  # protobuf varints hold 64 bits: at most ten bytes
            raise ChakraFormatError("varint longer than ten bytes")


def _fields(buf: bytes) -> Iterator[tuple[int, int, object]]:
    """(field number, wire type, raw value) triples of one message."""
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        elif wire == 2:
            size, pos = _read_varint(buf, pos)
            value, pos = buf[pos:pos + size], pos + size
        else:
            raise ChakraFormatError(f"unsupported wire type {wire}")
        if pos > len(buf):
            raise ChakraFormatError("truncated field")
        yield number, wire, value


def _text(raw: object) -> str:
    """A string field's value (a corrupted file may hold any bytes there)."""
    if not isinstance(raw, bytes):
        raise ChakraFormatError("a string field is not length-delimited")
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise ChakraFormatError("a string field is not UTF-8") from None


def _number(raw: object) -> int:
    """A varint field's value (a corrupted file may give the field another wire type)."""
    if not isinstance(raw, int):
        raise ChakraFormatError("a numeric field is not a varint")
    return raw


def _message(raw: object) -> bytes:
    """An embedded message's or packed list's bytes."""
    if not isinstance(raw, bytes):
        raise ChakraFormatError("an embedded message is not length-delimited")
    return raw


def _signed(value: int, bits: int) -> int:
    return value - (1 << bits) if value >= 1 << (bits - 1) else value


def _decode_value(encoding: str, kind: str, wire: int, raw: object) -> object:
    if encoding in _FIXED:
        if not isinstance(raw, bytes) or len(raw) != struct.calcsize(_FIXED[encoding]):
            raise ChakraFormatError(f"a {kind} attribute has the wrong wire type")
        return struct.unpack(_FIXED[encoding], raw)[0]
    if encoding == "str":
        return _text(raw)
    if encoding == "bytes":
        return bytes(_message(raw))
    raw = _number(raw)
    if encoding == "zigzag":
        return (raw >> 1) ^ -(raw & 1)
    if kind == "bool":
        return bool(raw)
    if encoding == "int":
        return _signed(raw & ((1 << 64) - 1), 64) if kind == "int64" else \
            _signed(raw & 0xFFFFFFFF, 32)
    return raw


def _unpack(encoding: str, kind: str, payload: bytes) -> list:
    if encoding in _FIXED:
        fmt = _FIXED[encoding]
        size = struct.calcsize(fmt)
        if len(payload) % size:
            raise ChakraFormatError(f"a packed {kind} list is not a whole number of values")
        return [struct.unpack(fmt, payload[i:i + size])[0] for i in range(0, len(payload), size)]
    values, pos = [], 0
    while pos < len(payload):
        raw, pos = _read_varint(payload, pos)
        values.append(_decode_value(encoding, kind, 0, raw))
    return values


def _decode_attr(buf: bytes) -> Attr:
    attr = Attr(name="", kind="", value=None)
    for number, wire, raw in _fields(_message(buf)):
        if number == 1:
            attr.name = _text(raw)
        elif number >= 3:
            kind = _BY_FIELD.get(number if number % 2 else number - 1)
            if kind is None:
                continue
            encoding = _ATTR_KINDS[kind][1]
            attr.kind = kind
            if number % 2:
                attr.value = _decode_value(encoding, kind, wire, raw)
            else:
                attr.is_list = True
                values: list = []
                for _, inner_wire, inner in _fields(_message(raw)):
                    if inner_wire == 2 and encoding not in ("str", "bytes"):
                        values += _unpack(encoding, kind, inner)
                    else:
                        values.append(_decode_value(encoding, kind, inner_wire, inner))
                attr.value = values
    return attr


def decode_node(buf: bytes, numbering: dict[str, int] = UPSTREAM_NUMBERING) -> Node:
    """Parse one Node message."""
    names = {v: k for k, v in numbering.items()}
    node = Node(id=0, name="", type="INVALID_NODE")
    for number, wire, raw in _fields(buf):
        if number == 1:
            node.id = _number(raw)
        elif number == 2:
            node.name = _text(raw)
        elif number == 3:
            if _number(raw) not in names:
                raise ChakraFormatError(f"node type {raw} is not in the dialect's numbering")
            node.type = names[raw]
        elif number in (4, 5):
            deps = _unpack("uint", "uint64", raw) if wire == 2 else [_number(raw)]
            (node.ctrl_deps if number == 4 else node.data_deps).extend(deps)
        elif number == 6:
            node.start_time_micros = _number(raw)
        elif number == 7:
            node.duration_micros = _number(raw)
        elif number == 10:
            node.attrs.append(_decode_attr(raw))
    return node


def _records(data: bytes) -> Iterator[bytes]:
    pos = 0
    while pos < len(data):
        size, pos = _read_varint(data, pos)
        if pos + size > len(data):
            raise ChakraFormatError("truncated record")
        yield data[pos:pos + size]
        pos += size


def read_et(path: Path, numbering: dict[str, int] = UPSTREAM_NUMBERING
            ) -> tuple[GlobalMetadata, list[Node]]:
    """Read one NPU's trace file."""
    records = _records(path.read_bytes())
    first = next(records, None)
    if first is None:
        raise ChakraFormatError(f"{path} is empty")
    meta = GlobalMetadata(version="")
    for number, _, raw in _fields(first):
        if number == 1:
            meta.version = _text(raw)
        elif number == 2:
            meta.attrs.append(_decode_attr(raw))
    return meta, [decode_node(r, numbering) for r in records]

