"""The "other hospital": head CT, C-spine CT and chest radiograph generators apart from the
training phantoms, read back as a worker reads a site's studies, and the command that measures a
model on them."""

from __future__ import annotations

import ast
import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from django.core.management import CommandError, call_command

from inference import pipeline
from inference.other_site import GENERATORS, other_site_dataset_write, other_site_generate
from inference.other_site.writer import other_site_write
from inference.registry import SHIPPED_MODELS_DIR, card_load
from inference.scoring import folder_score
from tests.interfaces import dciodvfy_errors

OTHER_SITE = Path(__file__).resolve().parents[2] / "inference" / "other_site"


def test_the_other_site_shares_no_code_with_the_training_phantoms():
    for path in OTHER_SITE.glob("*.py"):
        tree = ast.parse(path.read_text())
        imported = [
            node.module or ""
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
        ] + [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
             for alias in node.names]  # fmt: skip
        assert not [name for name in imported if name.startswith("inference.phantoms")], path
        assert not [name for name in imported if name.startswith("inference.training")], path


def test_its_files_are_valid_ct_and_read_back_as_hounsfield_units_in_spatial_order(tmp_path):
    volume = other_site_generate(finding="intracranial_hemorrhage", seed=30_000_010, positive=True)
    paths = other_site_write(volume, out_dir=tmp_path, seed=30_000_010)
    assert len(paths) == volume.hounsfield.shape[0]
    assert dciodvfy_errors(paths[0]) == []
    first = pydicom.dcmread(paths[0])
    assert (first.BitsStored, first.PixelRepresentation, float(first.RescaleIntercept)) == (
        12,
        0,
        -1024.0,
    )
    assert first.Rows == 256 and first.PixelPaddingValue == 0
    # the files are named in a shuffled order and instance 1 is the top slice
    instance_numbers = [
        int(pydicom.dcmread(p, stop_before_pixels=True).InstanceNumber) for p in paths
    ]
    assert instance_numbers != sorted(instance_numbers)
    series = pipeline.decode_series(paths)
    decoded = series.pixels
    assert decoded.shape == volume.hounsfield.shape
    # spatial order is the generator's, whatever the files' order; inside the field, HU within
    # the rounding of a 12-bit store
    inside = (decoded > -1000) & (volume.hounsfield > -1000) & (volume.hounsfield < 3000)
    assert np.abs(decoded[inside] - volume.hounsfield[inside]).max() <= 0.51
    lesion = volume.lesion
    assert lesion.any() and 45 <= decoded[lesion].mean() <= 95
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert truth["positive"] is True and truth["lesion_slices"]


def test_cspine_files_store_16_bits_with_slope_one_half_and_read_back_as_hounsfield_units(
    tmp_path,
):
    volume = other_site_generate(finding="fracture", seed=30_000_014, positive=True)
    assert volume.subtype == "cleft"
    paths = other_site_write(volume, out_dir=tmp_path, seed=30_000_014)
    assert dciodvfy_errors(paths[0]) == []
    first = pydicom.dcmread(paths[0])
    assert (first.BitsStored, first.PixelRepresentation) == (16, 0)
    assert (float(first.RescaleSlope), float(first.RescaleIntercept)) == (0.5, -2048.0)
    assert first.BodyPartExamined == "CSPINE"
    # instance 1 is the lowest slice here, but the files are still named in a shuffled order
    by_instance = sorted(paths, key=lambda p: int(pydicom.dcmread(p).InstanceNumber))
    heights = [float(pydicom.dcmread(p).ImagePositionPatient[2]) for p in by_instance]
    assert heights == sorted(heights) and by_instance != paths
    decoded = pipeline.decode_series(paths).pixels
    inside = (decoded > -1000) & (volume.hounsfield > -1000) & (volume.hounsfield < 30000)
    assert np.abs(decoded[inside] - volume.hounsfield[inside]).max() <= 0.26  # half a step
    # the cleft is fluid where bone was
    assert decoded[volume.lesion].mean() < 150 < 600 < np.percentile(decoded, 99.5)


def test_ctpa_files_store_signed_values_with_padding_and_carry_the_contrast_agent(tmp_path):
    volume = other_site_generate(finding="pulmonary_embolism", seed=30_000_002, positive=True)
    paths = other_site_write(volume, out_dir=tmp_path, seed=30_000_002)
    assert dciodvfy_errors(paths[0]) == []
    first = pydicom.dcmread(paths[0])
    assert (first.BitsStored, first.PixelRepresentation, first.PixelPaddingValue) == (16, 1, -2000)
    assert first.ContrastBolusAgent and float(first.SliceThickness) <= 3.0
    decoded = pipeline.decode_series(paths).pixels
    inside = (decoded > -1000) & (volume.hounsfield > -1000)
    assert np.abs(decoded[inside] - volume.hounsfield[inside]).max() <= 0.51
    assert (decoded == -1000).any()  # the padding outside the field reads as air
    # the embolus is a filling defect: far below the opacified arteries around it
    assert volume.positive and decoded[volume.lesion].mean() < 120 < 250 < decoded.max()


def test_radiographs_are_valid_monochrome1_dx_and_read_back_bright_where_dense(tmp_path):
    image = other_site_generate(finding="pneumothorax", seed=30_000_010, positive=True)
    (path,) = other_site_write(image, out_dir=tmp_path, seed=30_000_010)
    assert dciodvfy_errors(path) == []
    ds = pydicom.dcmread(path)
    assert (ds.Modality, ds.PhotometricInterpretation, ds.BitsStored) == ("DX", "MONOCHROME1", 14)
    assert ds.Rows != ds.Columns  # a non-square detector
    decoded = pipeline.decode_series([path]).pixels[0]
    assert decoded.shape == image.intensity.shape
    assert np.corrcoef(decoded.ravel(), image.intensity.ravel())[0, 1] > 0.99
    # the pneumothorax is air: darker than the rest of the image's lungs and body
    assert image.positive and decoded[image.lesion].mean() < decoded.mean()
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert truth["positive"] is True and truth["subtype"] == image.subtype


@pytest.mark.parametrize("finding", ["intracranial_hemorrhage", "pneumothorax"])
def test_a_study_written_twice_is_the_same_files(tmp_path, finding):
    for run in ("a", "b"):
        volume = other_site_generate(finding=finding, seed=30_000_021, positive=False)
        other_site_write(volume, out_dir=tmp_path / run, seed=30_000_021)
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


@pytest.mark.parametrize("finding", [str(finding) for finding in GENERATORS])
def test_negatives_carry_no_lesion_and_the_data_set_is_validate_model_layout(tmp_path, finding):
    labels = other_site_dataset_write(tmp_path, finding=finding, studies=4, seed_start=30_000_100)
    with open(tmp_path / "labels.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["study"] for row in rows] == list(labels)
    for row in rows:
        truth = json.loads((tmp_path / row["study"] / "truth.json").read_text())
        assert truth["positive"] == (row["label"] == "1")
        assert bool(truth["lesion_slices"]) == truth["positive"]
    assert sum(labels.values()) >= 1  # positives survive (onto two slices, for CT)


@pytest.mark.parametrize("finding", [str(finding) for finding in GENERATORS])
def test_the_shipped_model_scores_other_site_studies_as_a_worker_reads_them(tmp_path, finding):
    card = card_load(SHIPPED_MODELS_DIR / finding)
    scores = {}
    for seed, positive in ((30_000_200, True), (30_000_201, False)):
        volume = other_site_generate(finding=finding, seed=seed, positive=positive)
        other_site_write(volume, out_dir=tmp_path / str(seed), seed=seed)
        score, acquisition = folder_score(card, tmp_path / str(seed), threads=1)
        scores[positive] = score
        assert 0.0 <= score <= 1.0
        assert acquisition["manufacturer"].startswith("Other Site Imaging")
    assert scores[True] != scores[False]


def test_evaluate_other_site_records_metrics_with_intervals_in_a_card(tmp_path, capsys):
    folder = tmp_path / "model"
    shutil.copytree(SHIPPED_MODELS_DIR / "intracranial_hemorrhage", folder)
    call_command("evaluate_other_site", "--folder", str(folder), "--studies", "10", "--record")
    out = capsys.readouterr().out
    assert "on the other site (10 studies" in out and "scored 10/10" in out
    card = json.loads((folder / "card.json").read_text())
    other = card["other_site"]
    assert other["held_out_studies"] == 10 and other["positives"] + other["negatives"] == 10
    for name in ("auc", "sensitivity", "specificity"):
        low, high = other[f"{name}_ci95"]
        assert 0.0 <= low <= other[name] <= high <= 1.0
    assert other["threshold"] == pytest.approx(card["operating_point"]["threshold"])
    assert card_load(folder).name == card["name"]  # the card still loads


def test_evaluate_other_site_measures_the_pneumothorax_model_on_radiographs(tmp_path, capsys):
    folder = tmp_path / "model"
    shutil.copytree(SHIPPED_MODELS_DIR / "pneumothorax", folder)
    call_command("evaluate_other_site", "--folder", str(folder), "--studies", "10", "--record")
    assert "pneumothorax-demo" in capsys.readouterr().out
    other = json.loads((folder / "card.json").read_text())["other_site"]
    assert "chest radiographs" in other["generator"] and other["held_out_studies"] == 10
    assert set(other["sensitivity_by_subtype"]) <= {
        "apical", "lateral", "large", "tension", "deep_sulcus"
    }  # fmt: skip


def test_a_kept_data_set_is_reused_only_when_it_is_the_same_one(tmp_path, capsys):
    folder, work = tmp_path / "model", tmp_path / "work"
    shutil.copytree(SHIPPED_MODELS_DIR / "pneumothorax", folder)
    base = ["evaluate_other_site", "--folder", str(folder), "--work", str(work)]
    call_command(*base, "--studies", "10")
    assert "10/10 studies written" in capsys.readouterr().out
    call_command(*base, "--studies", "10")
    again = capsys.readouterr().out
    assert "written" not in again and "(10 studies, 5 positive)" in again
    with pytest.raises(CommandError, match="holds another data set .differs in: studies"):
        call_command(*base, "--studies", "12")
    described = json.loads((work / "dataset.json").read_text())
    described["generator_sha256"] = "0" * 64  # the generator changed since it was written
    (work / "dataset.json").write_text(json.dumps(described))
    with pytest.raises(CommandError, match="differs in: generator_sha256"):
        call_command(*base, "--studies", "10")


def test_a_study_the_model_cannot_read_is_reported_and_the_run_goes_on(tmp_path, capsys):
    folder, work = tmp_path / "model", tmp_path / "work"
    shutil.copytree(SHIPPED_MODELS_DIR / "pneumothorax", folder)
    base = ["evaluate_other_site", "--folder", str(folder), "--work", str(work), "--studies"]
    call_command(*base, "10")
    broken = work / "os-30000003" / "IMG0000"
    broken.write_bytes(broken.read_bytes()[:4000])  # pixel data cut short
    call_command(*base, "10", "--record")
    out = capsys.readouterr().out
    assert "os-30000003: not scored" in out and "1 could not be scored" in out
    other = json.loads((folder / "card.json").read_text())["other_site"]
    assert other["unscored"] == ["os-30000003"] and other["held_out_studies"] == 9


def test_evaluate_other_site_refuses_too_few_studies():
    with pytest.raises(CommandError, match="at least 10"):
        call_command("evaluate_other_site", "--studies", "3")
