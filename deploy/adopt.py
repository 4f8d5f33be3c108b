"""``edgevision adopt``: a classifier or keypoint model made elsewhere (any ONNX file with one image input),
given an edgevision spec, so that it runs everywhere a shipped model runs. The copy is the original's bytes
with the spec appended to its metadata; it is loaded and run once on a blank frame before it is kept."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import UserError
from .images import check_new_output, publish, temp_beside
from .onnxmeta import graph_inputs, read_header, with_metadata
from .runner import Runner, RunnerOptions
from .spec import SPEC_KEY, SpecError, TaskSpec

ADOPT_KINDS = ("classify", "keypoints")  # one output whose layout the spec already describes


@dataclass(frozen=True)
class AdoptOptions:
    """What the model does and how to feed it; ``size`` None takes the graph's own fixed size."""

    kind: str
    labels: tuple[str, ...]
    size: tuple[int, int] | None = None  # (height, width)
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    color: str = "RGB"
    resize: str = "stretch"
    output: str = "probs"

    def __post_init__(self) -> None:
        if self.kind not in ADOPT_KINDS:
            raise UserError(f"task must be one of {', '.join(ADOPT_KINDS)} (detectors and segmenters need an "
                            f"edgevision export or an Ultralytics one), got {self.kind!r}")


def image_input(model: Path) -> tuple[str, tuple[int | str, int | str]]:
    """The model's input layout ('NHWC' or 'NCHW', from where its 3 channels are) and its (h, w) dims."""
    inputs = graph_inputs(model)
    if len(inputs) != 1:
        raise UserError(f"{model} has {len(inputs)} inputs; adopt takes models with one image input")
    name, dims = inputs[0]
    if len(dims) == 4 and dims[3] == 3 and dims[1] != 3:
        return "NHWC", (dims[1], dims[2])
    if len(dims) == 4 and dims[1] == 3:
        return "NCHW", (dims[2], dims[3])
    raise UserError(f"{model}'s input {name!r} has shape {dims}; adopt takes an image batch (n, h, w, 3) or "
                    "(n, 3, h, w)")


def adopt(model: Path, out: Path, options: AdoptOptions) -> TaskSpec:
    """Write ``out``: ``model`` with a spec made from ``options``, checked by loading and running it; ``model``
    itself is only read. Refuses an existing ``out``."""
    model, out = Path(model), Path(out)
    header = read_header(model)
    if out.suffix != ".onnx":
        raise UserError(f"--out must end in .onnx, got {out}")
    if out.resolve() == model.resolve():
        raise UserError(f"--out {out} is the model itself; adopt writes a copy and leaves the original untouched")
    if SPEC_KEY in header.metadata:
        raise UserError(f"{model} already has an edgevision spec: it runs as it is")
    check_new_output(out, overwrite=False)
    layout, dims = image_input(model)
    fixed = tuple(d for d in dims if isinstance(d, int))
    size = options.size or (fixed if len(fixed) == 2 else None)
    if size is None:
        raise UserError(f"{model}'s input size is free ({dims}): give --size (e.g. --size 224)")
    if len(fixed) == 2 and tuple(size) != fixed:
        raise UserError(f"{model} takes {fixed[0]}x{fixed[1]} images (height x width), not --size {size[0]}x{size[1]}")
    try:
        spec = TaskSpec(options.kind, tuple(size), options.labels, color=options.color, mean=options.mean,
                        std=options.std, resize=options.resize, output=options.output, layout=layout)
    except SpecError as exc:
        raise UserError(f"cannot adopt {model}: {exc}") from exc
    with temp_beside(out, prefix=".adopt-") as tmp:
        tmp.write_bytes(with_metadata(model.read_bytes(), {SPEC_KEY: spec.to_json()}))
        try:
            Runner(tmp, RunnerOptions(providers="cpu"))  # the spec checks, the input checks, one blank frame
        except UserError as exc:
            raise UserError(f"{out} not written: {str(exc).replace(str(tmp), model.name)}") from exc
        publish(tmp, out)
    return spec
