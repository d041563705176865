"""The model registry and routing: checksums, site models, and series choice."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from inference.registry import (
    SHIPPED_MODELS_DIR,
    Aggregation,
    AggregationMethod,
    CtSlicesPreprocessing,
    ModelOutputs,
    RadiographPreprocessing,
    Window,
    registry_current,
    registry_load,
)
from inference.routing import SeriesDescriptor, SeriesSelection, StudyDescriptor, series_select
from triage.findings import Finding

ROOT = Path(__file__).resolve().parents[2]


def test_the_four_shipped_models_load_and_say_they_are_demonstrations():
    registry = registry_load([SHIPPED_MODELS_DIR])

    assert registry.refused == []
    assert sorted(card.finding for card in registry.models.values()) == sorted(Finding)
    for card in registry.models.values():
        assert card.demonstration
        assert "synthetic phantoms" in card.intended_use
        assert card.onnx_path.stat().st_size <= 10 * 1024 * 1024
        assert 0.0 < card.threshold < 1.0
        assert card.metrics["held_out_studies"] >= 500


def test_shipped_cards_are_read_into_typed_values_that_write_back_the_same_json():
    registry = registry_load([SHIPPED_MODELS_DIR])

    ich = registry.for_finding(Finding.INTRACRANIAL_HEMORRHAGE)[0]
    assert ich.preprocessing == CtSlicesPreprocessing(
        size=64, windows=(Window(40, 80), Window(80, 200)), neighbours=1
    )
    assert ich.preprocessing.channels == 6
    cxr = registry.for_finding(Finding.PNEUMOTHORAX)[0]
    assert cxr.preprocessing == RadiographPreprocessing(size=128)
    assert cxr.preprocessing.channels == 1
    for card in registry.models.values():
        assert card.outputs == ModelOutputs(logit="logit", activation_map="cam")
        assert card.aggregation == Aggregation(AggregationMethod.MAX)
        assert card.series_selection is SeriesSelection.THINNEST
        assert card.applies_to.exclude_keywords == ()
        assert card.preprocessing.as_json() == card.raw["preprocessing"]
        assert card.outputs.as_json() == card.raw["outputs"]
        assert str(card.aggregation) == card.raw["aggregation"]


def site_card(tmp_path: Path, edit: Any, *, finding: str = "intracranial_hemorrhage") -> Path:
    """A copy of a shipped model folder as a site model, its card.json changed by `edit`."""
    folder = tmp_path / "site-models" / f"{finding}-site"
    shutil.copytree(SHIPPED_MODELS_DIR / finding, folder)
    card = json.loads((folder / "card.json").read_text())
    card["name"] = f"{finding}-site"
    edit(card)
    (folder / "card.json").write_text(json.dumps(card))
    return folder.parent


def _drop(path: str) -> Any:
    *parents, last = path.split(".")

    def edit(card: dict[str, Any]) -> None:
        for key in parents:
            card = card[key]
        del card[last]

    return edit


def _set(path: str, value: Any) -> Any:
    *parents, last = path.split(".")

    def edit(card: dict[str, Any]) -> None:
        for key in parents:
            card = card[key]
        card[last] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (_drop("preprocessing"), "missing field preprocessing"),
        (_drop("preprocessing.size"), "missing field preprocessing.size"),
        (_set("preprocessing.size", "64"), "preprocessing.size: expected a whole number >= 1"),
        (_set("preprocessing.kind", "mri"), "preprocessing.kind: unknown pre-processing kind"),
        (_set("preprocessing.neighbors", 2), "preprocessing: unknown field(s) neighbors"),
        (_set("preprocessing.windows", [[40, 0]]), "preprocessing.windows[0]: the width must"),
        (_set("preprocessing.windows", [40, 80]), "preprocessing.windows[0]: expected [center"),
        (_set("aggregation", "mean"), "aggregation: unknown aggregation 'mean'"),
        (_set("aggregation", "topk_mean:0"), "aggregation: unknown aggregation 'topk_mean:0'"),
        (_set("outputs", {"logit": "logit"}), "missing field outputs.activation_map"),
        (_set("outputs", {"logits": "logit", "activation_map": "cam"}), "unknown field(s) logits"),
        (_set("outputs", {"logit": "cam", "activation_map": "cam"}), "name the same output"),
        (_set("outputs.logit", 0), "outputs.logit: expected a non-empty string, got 0 (int)"),
        (_set("operating_point.threshold", "0.9"), "operating_point.threshold: expected a number"),
        (_set("operating_point.threshold", 1.5), "operating_point.threshold: expected a probab"),
        (_set("finding", "stroke"), "finding: unknown finding 'stroke'"),
        (_set("series_selection", "first"), "series_selection: unknown selection 'first'"),
        (_set("applies_to.modalities", "CT"), "applies_to.modalities: expected a list of"),
        (_set("applies_to.min_instances", 1.5), "applies_to.min_instances: expected a whole"),
        (_set("applies_to.requires_contrast", "no"), "applies_to.requires_contrast: expected"),
        (_set("applies_to.exclude_keyword", ["SCOUT"]), "unknown field(s) exclude_keyword"),
        (_set("demonstration", "yes"), "demonstration: expected true or false"),
        (_set("file", "../model.onnx"), "file: expected a file name in the model folder"),
    ],
)
def test_a_malformed_card_is_refused_at_load_with_its_reason(tmp_path, edit, reason):
    registry = registry_load([SHIPPED_MODELS_DIR, site_card(tmp_path, edit)])

    assert [refused.folder.name for refused in registry.refused] == ["intracranial_hemorrhage-site"]
    assert registry.refused[0].reason.startswith("invalid card: ")
    assert reason in registry.refused[0].reason
    assert len(registry.models) == 4  # the shipped models still serve


def test_a_card_may_list_its_outputs_in_any_order_and_may_omit_them(tmp_path):
    reordered = site_card(tmp_path, _set("outputs", {"activation_map": "cam", "logit": "logit"}))
    omitted = site_card(tmp_path / "other", _drop("outputs"))

    registry = registry_load([reordered, omitted])

    assert registry.refused == []
    (card,) = registry.models.values()
    assert card.outputs == ModelOutputs(logit="logit", activation_map="cam")


def test_checksum_mismatch_refuses_that_model_and_keeps_the_others(tmp_path):
    shutil.copytree(SHIPPED_MODELS_DIR, tmp_path / "models")
    tampered = tmp_path / "models" / "pneumothorax" / "model.onnx"
    tampered.write_bytes(tampered.read_bytes() + b"\0")

    registry = registry_load([tmp_path / "models"])

    assert [refused.folder.name for refused in registry.refused] == ["pneumothorax"]
    assert "checksum mismatch" in registry.refused[0].reason
    assert Finding.PNEUMOTHORAX not in {card.finding for card in registry.models.values()}
    assert len(registry.models) == 3


def test_a_site_model_folder_is_added_without_code_changes(tmp_path):
    site = tmp_path / "site-models" / "ich-site"
    shutil.copytree(SHIPPED_MODELS_DIR / "intracranial_hemorrhage", site)
    card = json.loads((site / "card.json").read_text())
    card.update(name="ich-site-validated", version="2.1.0")
    (site / "card.json").write_text(json.dumps(card))

    registry = registry_load([SHIPPED_MODELS_DIR, tmp_path / "site-models"])

    assert "ich-site-validated" in registry.models
    assert len(registry.for_finding(Finding.INTRACRANIAL_HEMORRHAGE)) == 2


def test_unreadable_card_is_refused_with_its_reason(tmp_path):
    broken = tmp_path / "models" / "broken"
    broken.mkdir(parents=True)
    (broken / "card.json").write_text("{not json")

    registry = registry_load([tmp_path / "models"])

    assert registry.models == {}
    assert "unreadable card.json" in registry.refused[0].reason


@pytest.fixture
def head_ct() -> StudyDescriptor:
    def series(
        uid: str, thickness: float, count: int, description: str = "AXIAL"
    ) -> SeriesDescriptor:
        return SeriesDescriptor(
            uid=uid,
            modality="CT",
            body_part="HEAD",
            description=description,
            instance_count=count,
            slice_thickness=thickness,
        )

    return StudyDescriptor(
        modality="CT",
        body_part="HEAD",
        description="CT HEAD WO CONTRAST",
        series=[series("thick", 5.0, 30), series("thin", 2.5, 60), series("scout", 2.5, 2)],
    )


def test_routing_reads_the_thinnest_qualifying_series(head_ct):
    card = registry_load([SHIPPED_MODELS_DIR]).for_finding(Finding.INTRACRANIAL_HEMORRHAGE)[0]

    chosen = series_select(head_ct, card.applies_to, selection=card.series_selection)

    assert chosen is not None and chosen.uid == "thin"  # the scout has too few images


def test_exclude_keywords_come_from_the_card_and_keep_a_series_from_being_read(tmp_path, head_ct):
    site = site_card(tmp_path, _set("applies_to.exclude_keywords", ["perfusion", "Scout"]))
    card = registry_load([site]).models["intracranial_hemorrhage-site"]
    perfusion = SeriesDescriptor(
        uid="perfusion",
        modality="CT",
        body_part="HEAD",
        description="CT PERFUSION 1MM",
        instance_count=90,
        slice_thickness=1.0,
    )
    study = StudyDescriptor(
        modality="CT",
        body_part="HEAD",
        description="CT HEAD WO CONTRAST",
        series=[*head_ct.series, perfusion],
    )

    assert card.applies_to.exclude_keywords == ("PERFUSION", "SCOUT")
    chosen = series_select(study, card.applies_to, selection=card.series_selection)
    assert chosen is not None and chosen.uid == "thin"  # not the thinner perfusion series
    shipped = registry_load([SHIPPED_MODELS_DIR]).for_finding(Finding.INTRACRANIAL_HEMORRHAGE)[0]
    assert series_select(study, shipped.applies_to).uid == "perfusion"  # type: ignore[union-attr]


def test_registry_current_loads_the_configured_folders_once(tmp_path, monkeypatch):
    site = site_card(tmp_path, lambda card: None)
    monkeypatch.setattr(settings, "INFERENCE_MODEL_DIRS", [SHIPPED_MODELS_DIR, site])
    registry_current.cache_clear()
    try:
        registry = registry_current()

        assert "intracranial_hemorrhage-site" in registry.models
        assert len(registry.models) == 5
        assert registry_current() is registry
    finally:
        registry_current.cache_clear()


def test_the_registry_and_routing_load_without_onnx_runtime():
    script = (
        "import sys, django; django.setup(); "
        "import inference.registry, inference.routing; "
        "inference.registry.registry_current(); "
        "assert 'onnxruntime' not in sys.modules, 'onnxruntime imported'"
    )
    # pytest-django names the settings module in the environment the child inherits.
    assert os.environ.get("DJANGO_SETTINGS_MODULE")

    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True
    )

    assert result.returncode == 0, result.stderr


def test_routing_ignores_studies_no_model_applies_to():
    abdomen = StudyDescriptor(
        modality="CT",
        body_part="ABDOMEN",
        description="CT ABDOMEN PELVIS",
        series=[
            SeriesDescriptor(
                uid="a",
                modality="CT",
                body_part="ABDOMEN",
                description="AXIAL",
                instance_count=80,
                slice_thickness=3.0,
            )
        ],
    )
    registry = registry_load([SHIPPED_MODELS_DIR])

    assert all(series_select(abdomen, card.applies_to) is None for card in registry.models.values())
