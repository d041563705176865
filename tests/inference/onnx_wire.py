"""Edit an ONNX file at the protobuf wire level, without the `onnx` package (not installed where
the tests run): enough to list a graph's outputs in another order."""

from __future__ import annotations

MODEL_GRAPH = 7  # ModelProto.graph
GRAPH_OUTPUT = 12  # GraphProto.output (repeated ValueInfoProto)

Field = tuple[int, bytes]  # (field number, the whole encoded field: tag and payload)


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _fields(data: bytes) -> list[Field]:
    fields, at = [], 0
    while at < len(data):
        start = at
        tag, at = _varint(data, at)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            _, at = _varint(data, at)
        elif wire == 1:
            at += 8
        elif wire == 2:
            length, at = _varint(data, at)
            at += length
        elif wire == 5:
            at += 4
        else:
            raise ValueError(f"unsupported wire type {wire} in field {number}")
        fields.append((number, data[start:at]))
    return fields


def _payload(encoded: bytes) -> bytes:
    _, at = _varint(encoded, 0)
    length, at = _varint(encoded, at)
    return encoded[at : at + length]


def _length_delimited(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | 2) + _encode_varint(len(payload)) + payload


def outputs_reversed(model: bytes) -> bytes:
    """The same model with its graph outputs listed in reverse order."""
    out = []
    for number, encoded in _fields(model):
        if number == MODEL_GRAPH:
            graph = _fields(_payload(encoded))
            slots = [index for index, (n, _) in enumerate(graph) if n == GRAPH_OUTPUT]
            reordered = [graph[index] for index in reversed(slots)]
            for slot, field in zip(slots, reordered, strict=True):
                graph[slot] = field
            encoded = _length_delimited(MODEL_GRAPH, b"".join(field for _, field in graph))
        out.append(encoded)
    return b"".join(out)
