"""series_score: one series to a study score, key instance and heat map, as the worker, validation
and the benchmarks compute it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pydicom
import pytest

from inference import pipeline
from inference.phantoms import phantom_generate, phantom_write
from inference.registry import SHIPPED_MODELS_DIR, ModelCard, file_sha256, registry_load
from inference.runtime import session_create
from inference.scoring import SeriesScore, folder_score, series_score
from tests.inference.onnx_wire import outputs_reversed
from triage.findings import Finding

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def shipped_card(finding: Finding) -> ModelCard:
    return registry_load([SHIPPED_MODELS_DIR]).for_finding(finding)[0]


@pytest.fixture(scope="module")
def head_ct_paths(tmp_path_factory) -> list[Path]:
    """A positive head CT phantom written as DICOM (a seed far from every training range)."""
    folder = tmp_path_factory.mktemp("phantom") / "study"
    study = phantom_generate(Finding.INTRACRANIAL_HEMORRHAGE, positive=True, seed=77_000_001)
    return phantom_write(study, out_dir=folder, seed=77_000_001, transfer_syntax="explicit")


def test_series_score_is_the_explicit_pipeline_chain(head_ct_paths):
    """decode -> pre-process -> ONNX Runtime -> the card's calibration -> aggregate."""
    card = shipped_card(Finding.INTRACRANIAL_HEMORRHAGE)

    scored = series_score(card=card, paths=head_ct_paths, threads=1, batch_size=8)

    series = pipeline.decode_series(head_ct_paths)
    session = session_create(card.onnx_path, threads=1, providers=["CPUExecutionProvider"])
    probabilities, _ = pipeline.predict(
        session.session, pipeline.model_inputs(series, card.preprocessing), outputs=card.outputs
    )
    assert card.calibration is not None  # the card's scale: the raw probabilities mapped
    raw, key = pipeline.aggregate(probabilities, method=card.aggregation)
    score = card.calibration.value(raw)
    assert isinstance(scored, SeriesScore)
    assert scored.score == pytest.approx(score, abs=1e-5)
    assert scored.key_index == key
    uids = {
        str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID) for path in head_ct_paths
    }
    assert scored.key_instance_uid in uids
    assert scored.key_instance_uid == series.sop_instance_uids[key]
    assert scored.slices == len(head_ct_paths)
    assert scored.provider in ort.get_available_providers()
    assert scored.decode_ms > 0 and scored.inference_ms > 0
    assert scored.heat_map_png is not None and scored.heat_map_png.startswith(PNG_SIGNATURE)


def test_series_score_without_a_heat_map_gives_the_same_score(head_ct_paths):
    card = shipped_card(Finding.INTRACRANIAL_HEMORRHAGE)

    with_map = series_score(card=card, paths=head_ct_paths, threads=1, batch_size=32)
    without = series_score(card=card, paths=head_ct_paths, threads=1, batch_size=32, heat_map=False)

    assert without.heat_map_png is None
    assert without.score == with_map.score and without.key_index == with_map.key_index


def test_a_site_model_listing_its_outputs_in_the_other_order_scores_the_same(
    tmp_path, head_ct_paths
):
    """The same network with its graph outputs swapped (cam, logit), as a site might export it,
    and a card naming them: read by name, it scores exactly as the shipped model does."""
    folder = tmp_path / "ich-swapped"
    shutil.copytree(SHIPPED_MODELS_DIR / "intracranial_hemorrhage", folder)
    model = folder / "model.onnx"
    model.write_bytes(outputs_reversed(model.read_bytes()))
    card_json = json.loads((folder / "card.json").read_text())
    card_json.update(
        name="ich-swapped",
        sha256=file_sha256(model),
        outputs={"activation_map": "cam", "logit": "logit"},
    )
    (folder / "card.json").write_text(json.dumps(card_json))
    swapped = registry_load([folder]).models["ich-swapped"]
    outputs = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).get_outputs()
    assert [output.name for output in outputs] == ["cam", "logit"]

    shipped = shipped_card(Finding.INTRACRANIAL_HEMORRHAGE)
    expected = series_score(card=shipped, paths=head_ct_paths, threads=1, batch_size=16)
    scored = series_score(card=swapped, paths=head_ct_paths, threads=1, batch_size=16)

    assert scored.score == pytest.approx(expected.score, abs=1e-6)
    assert scored.key_instance_uid == expected.key_instance_uid


def test_pixel_data_that_cannot_be_decoded_raises_decode_error(tmp_path, head_ct_paths):
    broken = tmp_path / "broken.dcm"
    ds = pydicom.dcmread(head_ct_paths[0])
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 3]
    ds.save_as(broken)

    with pytest.raises(pipeline.DecodeError):
        series_score(
            card=shipped_card(Finding.INTRACRANIAL_HEMORRHAGE),
            paths=[broken],
            threads=1,
            batch_size=8,
        )


def test_validation_scores_a_study_folder_with_series_score(head_ct_paths, settings):
    card = shipped_card(Finding.INTRACRANIAL_HEMORRHAGE)
    folder = head_ct_paths[0].parent

    score, subgroups = folder_score(card, folder, threads=1)

    expected = series_score(
        card=card,
        paths=sorted(head_ct_paths),
        threads=1,
        batch_size=settings.INFERENCE_BATCH_SIZE,
        heat_map=False,
    )
    assert score == expected.score
    header = pydicom.dcmread(sorted(head_ct_paths)[0], stop_before_pixels=True)
    assert subgroups["sex"] == header.PatientSex and subgroups["manufacturer"] != "unknown"


@pytest.mark.django_db
def test_validation_run_from_phantoms_scores_each_phantom_as_a_worker_would():
    from triage.validation import validation_run_from_phantoms

    card = shipped_card(Finding.PNEUMOTHORAX)
    seen: list[tuple[int, int, str]] = []

    run = validation_run_from_phantoms(
        card=card, seeds=range(9_600_000, 9_600_004), progress=lambda *a: seen.append(a)
    )

    assert run.cases == 4
    rows = sorted(run.results.values_list("case", "label", "score"))
    assert [(case, label) for case, label, _ in rows] == [
        ("phantom-9600000", True),
        ("phantom-9600001", False),
        ("phantom-9600002", True),
        ("phantom-9600003", False),
    ]
    scores = np.asarray([score for _, _, score in rows])
    assert np.all((scores >= 0) & (scores <= 1))
    assert [index for index, _, _ in seen] == [1, 2, 3, 4]
