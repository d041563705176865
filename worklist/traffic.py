"""Simulated ED traffic for the demo: synthetic studies sent over C-STORE at an ED-like rate."""

from __future__ import annotations

import logging
import random
import threading
from dataclasses import replace

from pynetdicom import AE

from worklist.dicom.synthetic import StudySpec, synthetic_study

logger = logging.getLogger(__name__)

# A rough ED imaging mix: head CT dominates, then chest radiographs, CTPA and C-spine CT.
ED_MIX: list[tuple[float, StudySpec]] = [
    (
        0.35,
        StudySpec(
            modality="CT",
            body_part="HEAD",
            description="CT HEAD WO CONTRAST",
            series_description="AXIAL 5MM",
            slices=32,
            slice_thickness=5.0,
        ),
    ),
    (
        0.30,
        StudySpec(
            modality="CR",
            body_part="CHEST",
            description="XR CHEST 1 VIEW",
            series_description="AP",
            slices=1,
            rows=256,
            columns=256,
        ),
    ),
    (
        0.15,
        StudySpec(
            modality="CT",
            body_part="CHEST",
            description="CTPA CHEST W CONTRAST",
            series_description="AXIAL 1MM",
            slices=64,
            slice_thickness=1.0,
            contrast_agent="IOHEXOL",
        ),
    ),
    (
        0.10,
        StudySpec(
            modality="CT",
            body_part="CSPINE",
            description="CT C-SPINE WO CONTRAST",
            series_description="AXIAL 1MM BONE",
            slices=40,
            slice_thickness=1.0,
        ),
    ),
    (
        0.10,
        StudySpec(
            modality="CT",
            body_part="ABDOMEN",
            description="CT ABDOMEN PELVIS",
            series_description="AXIAL 3MM",
            slices=24,
            slice_thickness=3.0,
        ),
    ),
]
LOCATIONS = ["ED-RESUS-1", "ED-MAJORS-4", "ED-MINORS-2", "WARD 7B", "OUTPATIENTS"]
PRIORITIES = ["STAT", "HIGH", "ROUTINE", "ROUTINE", ""]


def _pick(rng: random.Random) -> StudySpec:
    weights = [weight for weight, _ in ED_MIX]
    spec = rng.choices([spec for _, spec in ED_MIX], weights=weights)[0]
    return replace(spec, location=rng.choice(LOCATIONS), priority=rng.choice(PRIORITIES))


def study_send(*, spec: StudySpec, seed: int, host: str, port: int, called_ae: str) -> int:
    """Send one synthetic study over one association; return how many instances were stored."""
    ae = AE(ae_title="DEMO_MODALITY")
    datasets = list(synthetic_study(spec, seed=seed))
    ae.add_requested_context(datasets[0].SOPClassUID, datasets[0].file_meta.TransferSyntaxUID)
    assoc = ae.associate(host, port, ae_title=called_ae)
    if not assoc.is_established:
        raise ConnectionError(f"association with {called_ae}@{host}:{port} failed")
    stored = 0
    try:
        for ds in datasets:
            response = assoc.send_c_store(ds)
            stored += int(getattr(response, "Status", -1) == 0)
    finally:
        assoc.release()
    return stored


def traffic_loop(
    *,
    host: str,
    port: int,
    called_ae: str,
    studies_per_minute: float,
    seed: int,
    stop: threading.Event,
) -> None:
    rng = random.Random(seed)
    index = 0
    while not stop.is_set():
        spec = _pick(rng)
        try:
            stored = study_send(
                spec=spec, seed=seed * 100_000 + index, host=host, port=port, called_ae=called_ae
            )
            logger.info(
                "demo traffic: sent %s %s (%s instances)", spec.modality, spec.body_part, stored
            )
        except Exception:
            logger.exception("demo traffic: sending failed; retrying with the next study")
        index += 1
        stop.wait(rng.expovariate(studies_per_minute / 60.0))
