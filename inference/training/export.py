"""ONNX export with a dynamic batch dimension, then a parity check against torch (or failure)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from inference.training.model import CamNet

OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAMES = ("logit", "cam")
PARITY_TOLERANCE = 1e-4
MAX_BYTES = 10 * 1024 * 1024


class ExportError(Exception):
    """The exported file does not behave like the trained model; nothing should ship."""


@dataclass(frozen=True, kw_only=True)
class ExportResult:
    path: Path
    bytes: int
    opset: int
    parity_inputs: int
    logit_max_abs_diff: float
    cam_max_abs_diff: float


def cpu_session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def model_export(model: CamNet, *, path: Path, parity_inputs: np.ndarray) -> ExportResult:
    """Write `model` to `path` as ONNX and check ONNX Runtime against torch on `parity_inputs`."""
    model.eval()
    example = torch.from_numpy(parity_inputs[:2].astype(np.float32))
    path.parent.mkdir(parents=True, exist_ok=True)
    # torch 2.13 defaults to the dynamo exporter, which needs onnxscript; the TorchScript-based
    # exporter works offline with torch and onnx alone.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_axes={name: {0: "batch"} for name in (INPUT_NAME, *OUTPUT_NAMES)},
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph)
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise ExportError(f"{path} is {size} bytes, over the {MAX_BYTES}-byte limit")
    session = cpu_session(path)
    outputs = [output.name for output in session.get_outputs()]
    if tuple(outputs) != OUTPUT_NAMES:
        raise ExportError(f"outputs are {outputs}, expected {list(OUTPUT_NAMES)}")
    batch = parity_inputs.astype(np.float32)
    onnx_logit, onnx_cam = session.run(None, {INPUT_NAME: batch})
    with torch.no_grad():
        torch_logit, torch_cam = model(torch.from_numpy(batch))
    logit_diff = float(np.max(np.abs(onnx_logit - torch_logit.numpy())))
    cam_diff = float(np.max(np.abs(onnx_cam - torch_cam.numpy())))
    if not logit_diff <= PARITY_TOLERANCE:  # also catches NaN
        raise ExportError(
            f"ONNX Runtime and torch disagree: max |logit difference| {logit_diff:.2e} "
            f"> {PARITY_TOLERANCE:.0e} over {batch.shape[0]} inputs"
        )
    return ExportResult(
        path=path,
        bytes=size,
        opset=OPSET,
        parity_inputs=int(batch.shape[0]),
        logit_max_abs_diff=logit_diff,
        cam_max_abs_diff=cam_diff,
    )
