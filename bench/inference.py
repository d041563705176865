"""Inference speed per shipped model: ONNX Runtime versus torch eager on the same weights.

Run: .venv/bin/python bench/inference.py [--json] [--repeats 5] [--skip-end-to-end]
Needs torch for the comparison (pip install -e ".[train]"). For each model, one phantom study is
pre-processed exactly as a worker does; then the model part is timed with ONNX Runtime (the
worker's session settings) and with torch eager executing the same ONNX graph and weights. Also
timed: decode + pre-processing, and a 40-slice head CT end to end (decode to study score).
A GPU section runs when CUDA is available to ONNX Runtime. At the end, bench/result_latency.py
measures the time from the last instance stored to the result stored for one study of each kind
through the real listener, Celery worker, Redis and PostgreSQL (skip with --skip-end-to-end).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Run as a script, bench/ comes first on sys.path, where this file would stand in for the
# product's `inference` package: the repository root goes before it.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import REPO, SETTINGS_MODULE, machine_info, spread  # noqa: E402

os.environ.setdefault("DJANGO_SETTINGS_MODULE", SETTINGS_MODULE)
os.environ.setdefault("DEBUG", "1")

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from onnx import numpy_helper  # noqa: E402

from inference import pipeline  # noqa: E402
from inference.phantoms import phantom_generate, phantom_write  # noqa: E402
from inference.registry import SHIPPED_MODELS_DIR, ModelCard, registry_load  # noqa: E402
from inference.runtime import session_create  # noqa: E402
from inference.scoring import series_score  # noqa: E402

THREADS = 2


class TorchGraph:
    """Executes an ONNX graph of the shipped models' ops with torch eager operators."""

    def __init__(self, path: Path) -> None:
        import torch

        self.torch = torch
        model = onnx.load(str(path))
        self.graph = model.graph
        self.values: dict[str, Any] = {
            init.name: torch.from_numpy(numpy_helper.to_array(init).copy())
            for init in self.graph.initializer
        }

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        torch = self.torch
        functional = torch.nn.functional
        env = dict(self.values)
        env[self.graph.input[0].name] = torch.from_numpy(batch)
        with torch.inference_mode():
            for node in self.graph.node:
                attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
                args = [env[name] for name in node.input if name]
                op = node.op_type
                if op == "Conv":
                    pads = attrs.get("pads", [0, 0, 0, 0])
                    out = functional.conv2d(
                        args[0],
                        args[1],
                        args[2] if len(args) > 2 else None,
                        stride=tuple(attrs.get("strides", [1, 1])),
                        padding=(pads[0], pads[1]),
                        dilation=tuple(attrs.get("dilations", [1, 1])),
                        groups=attrs.get("group", 1),
                    )
                elif op == "Relu":
                    out = functional.relu(args[0])
                elif op == "Constant":
                    out = torch.from_numpy(numpy_helper.to_array(attrs["value"]).copy())
                elif op == "Gather":
                    out = (
                        torch.index_select(
                            args[0], attrs.get("axis", 0), args[1].reshape(-1).long()
                        ).squeeze(attrs.get("axis", 0))
                        if args[1].dim() == 0
                        else torch.index_select(args[0], attrs.get("axis", 0), args[1].long())
                    )
                elif op == "Flatten":
                    out = torch.flatten(args[0], start_dim=attrs.get("axis", 1))
                elif op == "ReduceLogSumExp":
                    axes = attrs.get("axes") or (args[1].tolist() if len(args) > 1 else None)
                    out = torch.logsumexp(
                        args[0], dim=tuple(axes), keepdim=bool(attrs.get("keepdims", 1))
                    )
                elif op in (
                    "MatMul",
                    "Gemm",
                    "Add",
                    "Mul",
                    "ReduceMean",
                    "Squeeze",
                    "Unsqueeze",
                    "Reshape",
                ):
                    out = _generic(torch, op, args, attrs)
                else:
                    raise NotImplementedError(f"op {op} not in the torch executor")
                env[node.output[0]] = out
        names = [output.name for output in self.graph.output]
        return env[names[0]].numpy(), env[names[1]].numpy()


def _generic(torch: Any, op: str, args: list[Any], attrs: dict[str, Any]) -> Any:
    if op == "MatMul":
        return torch.matmul(args[0], args[1])
    if op == "Gemm":
        b = args[1].t() if attrs.get("transB", 0) else args[1]
        return torch.matmul(args[0], b) + (args[2] if len(args) > 2 else 0)
    if op == "Add":
        return args[0] + args[1]
    if op == "Mul":
        return args[0] * args[1]
    if op == "ReduceMean":
        axes = attrs.get("axes") or args[1].tolist()
        return torch.mean(args[0], dim=tuple(axes), keepdim=bool(attrs.get("keepdims", 1)))
    if op == "Squeeze":
        return torch.squeeze(args[0])
    if op == "Unsqueeze":
        axes = attrs.get("axes") or args[1].tolist()
        out = args[0]
        for axis in sorted(axes):
            out = out.unsqueeze(axis)
        return out
    return torch.reshape(args[0], tuple(args[1].tolist()))


def timed(function: Any, repeats: int) -> list[float]:
    function()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def study_for(card: ModelCard, folder: Path, *, slices: int | None = None) -> list[Path]:
    seed = 9_200_001
    study = phantom_generate(card.finding, positive=True, seed=seed)
    if slices is not None and study.pixels.shape[0] != slices:
        for seed in range(9_200_002, 9_200_400):
            study = phantom_generate(card.finding, positive=True, seed=seed)
            if study.pixels.shape[0] == slices:
                break
    return [p for p in phantom_write(study, out_dir=folder, seed=seed) if p.suffix == ".dcm"]


def bench_model(card: ModelCard, *, repeats: int, work: Path) -> dict[str, Any]:
    import torch

    torch.set_num_threads(THREADS)
    paths = study_for(card, work / card.finding.value)
    decode_times = timed(
        lambda: pipeline.model_inputs(pipeline.decode_series(paths), card.preprocessing), repeats
    )
    inputs = pipeline.model_inputs(pipeline.decode_series(paths), card.preprocessing)
    session = session_create(
        card.onnx_path, threads=THREADS, providers=["CPUExecutionProvider"]
    ).session
    eager = TorchGraph(card.onnx_path)
    batch = 32

    def run_ort() -> None:
        pipeline.predict(session, inputs, batch_size=batch)

    def run_torch() -> None:
        for start in range(0, inputs.shape[0], batch):
            eager(inputs[start : start + batch])

    ort_logits, _ = session.run(None, {session.get_inputs()[0].name: inputs[:batch]})
    torch_logits, _ = eager(inputs[:batch])
    ort_times = timed(run_ort, repeats)
    torch_times = timed(run_torch, repeats)
    row: dict[str, Any] = {
        "model": card.label,
        "slices": int(inputs.shape[0]),
        "decode_preprocess_s": spread(decode_times),
        "onnxruntime_s": spread(ort_times),
        "torch_eager_s": spread(torch_times),
        "onnxruntime_slices_per_s": inputs.shape[0] / statistics.median(ort_times),
        "torch_slices_per_s": inputs.shape[0] / statistics.median(torch_times),
        "ratio_torch_over_ort": statistics.median(torch_times) / statistics.median(ort_times),
        "parity_max_abs_logit_diff": float(np.max(np.abs(np.asarray(ort_logits) - torch_logits))),
    }
    if "CUDAExecutionProvider" in ort.get_available_providers():
        try:
            gpu = session_create(
                card.onnx_path, threads=THREADS, providers=["CUDAExecutionProvider"]
            )
            if gpu.provider == "CUDAExecutionProvider":
                gpu_times = timed(
                    lambda: pipeline.predict(gpu.session, inputs, batch_size=128), repeats
                )
                row["cuda_s"] = spread(gpu_times)
        except Exception as problem:  # no usable GPU: the CPU figures stand alone
            row["cuda_error"] = str(problem)[:200]
    return row


def head_ct_end_to_end(card: ModelCard, *, repeats: int, work: Path) -> dict[str, Any]:
    """Files to study score through the worker's own chain (`inference.scoring`)."""
    paths = study_for(card, work / "head40", slices=40)

    def score() -> None:
        series_score(card=card, paths=paths, threads=THREADS, batch_size=32, heat_map=False)

    return {"slices": len(paths), "seconds": spread(timed(score, repeats))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--skip-end-to-end",
        action="store_true",
        help="skip last instance -> result per kind (needs DCMTK, PostgreSQL, Redis)",
    )
    options = parser.parse_args()
    import logging

    import django

    django.setup()
    logging.getLogger("openjpeg").setLevel(logging.WARNING)
    import torch

    registry = registry_load([SHIPPED_MODELS_DIR])
    with tempfile.TemporaryDirectory(prefix="bench-inference-") as folder:
        work = Path(folder)
        rows = [
            bench_model(card, repeats=options.repeats, work=work)
            for card in registry.models.values()
        ]
        ich = registry.for_finding("intracranial_hemorrhage")
        head = head_ct_end_to_end(ich[0], repeats=options.repeats, work=work) if ich else None
    result = {
        "machine": machine_info(
            load_digits=None,
            threads=THREADS,
            onnxruntime=ort.__version__,
            torch=torch.__version__,
            providers=ort.get_available_providers(),
        ),
        "models": rows,
        "head_ct_40_slices_end_to_end": head,
    }
    if not options.skip_end_to_end:
        result["last_instance_to_result"] = result_latency(as_json=options.json)
    if options.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"inference on CPU, {THREADS} threads | cores {os.cpu_count()} | onnxruntime "
        f"{ort.__version__} | torch {torch.__version__} | load {os.getloadavg()[0]:.2f}"
    )
    print(
        "demonstration models trained on synthetic phantoms; median of "
        f"{options.repeats} after a warm-up (min-max)"
    )
    print(
        f"{'model':<36}{'slices':>7} {'decode+prep s':>22} {'ORT s':>22} {'torch s':>22}"
        f"{'ORT sl/s':>10}{'torch sl/s':>11}{'torch/ORT':>10}{'parity':>10}"
    )

    def cell(row: dict[str, Any], key: str) -> str:
        s = row[key]
        return f"{s['median']:.3f} ({s['min']:.3f}-{s['max']:.3f})"

    for row in rows:
        print(
            f"{row['model']:<36}{row['slices']:>7} {cell(row, 'decode_preprocess_s'):>22} "
            f"{cell(row, 'onnxruntime_s'):>22} {cell(row, 'torch_eager_s'):>22}"
            f"{row['onnxruntime_slices_per_s']:>10.0f}{row['torch_slices_per_s']:>11.0f}"
            f"{row['ratio_torch_over_ort']:>10.2f}{row['parity_max_abs_logit_diff']:>10.1e}"
        )
        if "cuda_s" in row:
            print(f"  CUDA: {row['cuda_s']['median']:.4f} s")
    if head:
        s = head["seconds"]
        print(
            f"head CT, {head['slices']} slices, decode to study score: median {s['median']:.3f} s "
            f"(min {s['min']:.3f}, max {s['max']:.3f})"
        )
    if "CUDAExecutionProvider" not in ort.get_available_providers() or not any(
        "cuda_s" in r for r in rows
    ):
        print("GPU section: CUDA execution provider not usable on this machine; CPU only.")
    if not options.skip_end_to_end:
        print(result["last_instance_to_result"], end="")


def result_latency(*, as_json: bool) -> Any:
    """Run bench/result_latency.py in its own process (it configures Django for PostgreSQL)."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "DJANGO_SETTINGS_MODULE")}
    completed = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "result_latency.py"),
            *(["--json"] if as_json else []),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise SystemExit(f"bench/result_latency.py failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout) if as_json else completed.stdout


if __name__ == "__main__":
    main()
