"""The model registry and routing: checksums, site models, and series choice."""

from __future__ import annotations

import json
import shutil

import pytest

from inference.registry import SHIPPED_MODELS_DIR, registry_load
from inference.routing import SeriesDescriptor, StudyDescriptor, series_select
from triage.findings import Finding


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
