"""Read an ONNX file's header fields (IR version, opsets, metadata) without the onnx package.

A model file is a protobuf ``ModelProto``; only its top-level fields are walked here, so a
model's spec can be checked before a (possibly slow) GPU session is built, on a Jetson that
has onnxruntime but not onnx.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .errors import UserError, shell_quote

SOURCE_KEY = "edgevision.made_from_sha256"  # in a precision variant: the float32 file it was made from


def file_sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


_IR_VERSION, _PRODUCER, _PRODUCER_VERSION, _GRAPH, _OPSET_IMPORT, _METADATA = 1, 2, 3, 7, 8, 14


@dataclass(frozen=True)
class OnnxHeader:
    ir_version: int
    producer: str
    opsets: dict[str, int]  # domain ("" is the default ai.onnx) -> version
    metadata: dict[str, str] = field(default_factory=dict)


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(buf: bytes):
    """Yield (field number, wire type, value) for one protobuf message; value is bytes or int."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ValueError("field number 0")
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            size, pos = _varint(buf, pos)
            if pos + size > len(buf):
                raise ValueError("length past the end")
            value, pos = buf[pos : pos + size], pos + size
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"wire type {wire}")
        yield number, wire, value


def _message(buf: bytes) -> dict[int, bytes | int]:
    """A small sub-message as {field number: last value}."""
    return {number: value for number, _, value in _fields(buf)}


def read_header(path: str | Path) -> OnnxHeader:
    """Parse the top level of an ONNX file; raise UserError when it is not one."""
    path = Path(path)
    if path.is_dir():
        if (path / "model.keras").is_file() or (path / "model.onnx").is_file():
            raise UserError(f"{path} is a training run folder, not a model file: export it first "
                            f"(edgevision export {shell_quote(path)} --out models/NAME.onnx)")
        raise UserError(f"{path} is a folder, not a model file: give an .onnx file or a pipeline .json")
    if not path.is_file():
        raise UserError(f"model file not found: {path}")
    data = path.read_bytes()
    ir_version, names, opsets, metadata, has_graph = 0, {}, {}, {}, False
    try:
        for number, wire, value in _fields(data):
            if number == _IR_VERSION and wire == 0:
                ir_version = value
            elif number in (_PRODUCER, _PRODUCER_VERSION) and wire == 2:
                names[number] = value.decode("utf-8", "replace")
            elif number == _GRAPH and wire == 2:
                has_graph = True
            elif number == _OPSET_IMPORT and wire == 2:
                parts = _message(value)
                opsets[bytes(parts.get(1, b"")).decode()] = int(parts.get(2, 0))
            elif number == _METADATA and wire == 2:
                parts = _message(value)
                metadata[bytes(parts.get(1, b"")).decode()] = bytes(parts.get(2, b"")).decode("utf-8", "replace")
    except (ValueError, UnicodeDecodeError, TypeError):
        has_graph = False
    if not has_graph or ir_version <= 0:
        raise UserError(f"{path} is not an ONNX model (export one with 'edgevision export')")
    producer = f"{names.get(_PRODUCER, '')} {names.get(_PRODUCER_VERSION, '')}".strip()
    return OnnxHeader(ir_version, producer, opsets, metadata)


# GraphProto.initializer, .input; ValueInfoProto.name, .type; TypeProto.tensor_type; Tensor.shape; Shape.dim
_G_INITIALIZER, _G_INPUT, _TENSOR_NAME = 5, 11, 8


def _dims(value_info: bytes) -> tuple[int | str, ...]:
    """A ValueInfoProto's tensor shape: ints where fixed, the symbol ('batch', or '?') where free."""
    type_proto = _message(_message(value_info).get(2, b""))
    shape = _message(type_proto.get(1, b"")).get(2, b"")
    dims: list[int | str] = []
    for number, wire, dim in _fields(shape):
        if number == 1 and wire == 2:
            parts = _message(dim)
            value = parts.get(1)
            dims.append(value if isinstance(value, int) and value > 0 else
                        bytes(parts.get(2, b"?")).decode("utf-8", "replace") or "?")
    return tuple(dims)


def graph_inputs(path: str | Path) -> list[tuple[str, tuple[int | str, ...]]]:
    """The graph's inputs (initializers left out) as (name, dims), read without onnxruntime, so a
    TensorRT profile can name them before the session exists; [] when the file cannot be walked."""
    data = memoryview(Path(path).read_bytes())
    try:
        graph = next((value for number, wire, value in _fields(data) if number == _GRAPH and wire == 2), None)
        if graph is None:
            return []
        inputs, weights = [], set()
        for number, wire, value in _fields(graph):
            if number == _G_INPUT and wire == 2:
                inputs.append((bytes(_message(value).get(1, b"")).decode(), _dims(value)))
            elif number == _G_INITIALIZER and wire == 2:
                weights.add(bytes(_message(value).get(_TENSOR_NAME, b"")).decode("utf-8", "replace"))
    except (ValueError, UnicodeDecodeError, TypeError):
        return []
    return [(name, dims) for name, dims in inputs if name not in weights]


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _encode_field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field."""
    return _encode_varint(number << 3 | 2) + _encode_varint(len(payload)) + payload


def with_metadata(data: bytes, entries: dict[str, str]) -> bytes:
    """An ONNX file's bytes with ``entries`` added to its ``metadata_props``: protobuf reads fields appended
    to a message as part of it, so the graph and everything else stay byte for byte as they were."""
    extra = b"".join(_encode_field(_METADATA, _encode_field(1, key.encode()) + _encode_field(2, value.encode()))
                     for key, value in entries.items())
    return bytes(data) + extra
