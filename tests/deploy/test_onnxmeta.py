import pytest
from edgevision.deploy.errors import UserError
from edgevision.deploy.onnxmeta import read_header
from edgevision.deploy.spec import SPEC_KEY


def test_read_header_finds_ir_version_opset_and_spec_without_the_onnx_package(tiny_model):
    header = read_header(tiny_model("classify"))
    assert header.ir_version == 8
    assert header.opsets == {"": 17}
    assert '"kind": "classify"' in header.metadata[SPEC_KEY]


@pytest.mark.parametrize("content", [b"", b"hello, this is text\n", bytes(range(256)) * 4])
def test_read_header_rejects_files_that_are_not_onnx(tmp_path, content):
    path = tmp_path / "x.onnx"
    path.write_bytes(content)
    with pytest.raises(UserError, match="is not an ONNX model"):
        read_header(path)


def test_read_header_names_a_missing_file(tmp_path):
    with pytest.raises(UserError, match="model file not found"):
        read_header(tmp_path / "nope.onnx")
