"""ONNX Runtime sessions: one per model per process, CUDA when present, CPU otherwise."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnxruntime as ort

logger = logging.getLogger(__name__)

_sessions: dict[tuple[str, str], LoadedSession] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class LoadedSession:
    session: Any
    provider: str  # the execution provider actually serving the first node


def _nvidia_device_present() -> bool:
    # onnxruntime-gpu lists the CUDA provider even on hosts without a GPU, then logs an error
    # when it cannot load CUDA; asking only where a device node exists keeps CPU hosts quiet.
    return Path("/dev/nvidiactl").exists() or Path("/proc/driver/nvidia").exists()


def preferred_providers() -> list[str]:
    available = ort.get_available_providers()
    wanted = ["CPUExecutionProvider"]
    if _nvidia_device_present():
        wanted.insert(0, "CUDAExecutionProvider")
    return [provider for provider in wanted if provider in available]


def session_create(
    path: Path, *, threads: int, providers: list[str] | None = None
) -> LoadedSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    # Spinning threads burn the cores other workers need between runs.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(
        str(path), sess_options=options, providers=providers or preferred_providers()
    )
    provider = session.get_providers()[0]
    return LoadedSession(session=session, provider=provider)


def session_for(*, key: tuple[str, str], path: Path, threads: int) -> LoadedSession:
    """The process-wide session for a model (name, sha256), created on first use."""
    with _lock:
        loaded = _sessions.get(key)
        if loaded is None:
            try:
                loaded = session_create(path, threads=threads)
            except Exception:
                if "CUDAExecutionProvider" not in preferred_providers():
                    raise
                logger.exception("CUDA session failed for %s; falling back to CPU", key[0])
                loaded = session_create(path, threads=threads, providers=["CPUExecutionProvider"])
            logger.info("model %s served by %s", key[0], loaded.provider)
            _sessions[key] = loaded
        return loaded
