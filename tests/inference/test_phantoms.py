"""The phantom generator: deterministic, valid DICOM, labels that match what is drawn, and the
synth_study command. No database needed."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from django.core.management import CommandError, call_command
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, JPEGLSLossless, RLELossless

from inference.phantoms import PhantomStudy, phantom_generate, phantom_write
from inference.phantoms.traffic import ed_mix, phantom_study_send
from triage.findings import Finding

CT_FINDINGS = (Finding.INTRACRANIAL_HEMORRHAGE, Finding.PULMONARY_EMBOLISM, Finding.FRACTURE)


def read_back(paths: list[Path]) -> tuple[np.ndarray, list[pydicom.FileDataset]]:
    """The written series as the worker would see it: sorted along the slice normal, rescaled
    (CT), or as bright = dense intensities in [0, 1] (radiographs)."""
    datasets = [pydicom.dcmread(path) for path in paths]
    if datasets[0].Modality == "CT":
        datasets.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))
        volume = np.stack(
            [
                ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope)
                + float(ds.RescaleIntercept)
                for ds in datasets
            ]
        )
        return volume, datasets
    ds = datasets[0]
    image = ds.pixel_array.astype(np.float32) / 4095.0
    if ds.PhotometricInterpretation == "MONOCHROME1":
        image = 1.0 - image
    return image[None], datasets


def dilate(mask: np.ndarray, *, steps: int, through_slices: bool) -> np.ndarray:
    grown = mask.copy()
    axes = (0, 1, 2) if through_slices else (1, 2)
    for _ in range(steps):
        step = grown.copy()
        for axis in axes:
            step |= np.roll(grown, 1, axis=axis) | np.roll(grown, -1, axis=axis)
        grown = step
    return grown


@pytest.mark.parametrize("finding", list(Finding))
def test_same_seed_gives_an_identical_study_and_another_seed_a_different_one(finding):
    first = phantom_generate(finding, positive=True, seed=11)
    again = phantom_generate(finding, positive=True, seed=11)
    other = phantom_generate(finding, positive=True, seed=12)
    assert np.array_equal(first.pixels, again.pixels)
    assert np.array_equal(first.lesion_mask, again.lesion_mask)
    assert (first.subtype, first.size, first.pixel_spacing, first.photometric) == (
        again.subtype,
        again.size,
        again.pixel_spacing,
        again.photometric,
    )
    assert first.pixels.shape != other.pixels.shape or not np.array_equal(
        first.pixels, other.pixels
    )


@pytest.mark.parametrize("finding", [Finding.INTRACRANIAL_HEMORRHAGE, Finding.PNEUMOTHORAX])
def test_same_seed_writes_byte_identical_files_and_another_seed_other_uids(finding, tmp_path):
    study = phantom_generate(finding, positive=False, seed=11)
    written = phantom_write(study, out_dir=tmp_path / "a", seed=11)
    rewritten = phantom_write(study, out_dir=tmp_path / "b", seed=11)
    assert [p.read_bytes() for p in written] == [p.read_bytes() for p in rewritten]
    other = phantom_generate(finding, positive=False, seed=12)
    other_files = phantom_write(other, out_dir=tmp_path / "c", seed=12)

    def uids(paths: list[Path]) -> set[str]:
        headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]
        return {str(h.StudyInstanceUID) for h in headers} | {str(h.SOPInstanceUID) for h in headers}

    assert uids(written) == uids(rewritten)
    assert uids(written).isdisjoint(uids(other_files))


@pytest.mark.parametrize(
    ("finding", "syntax"),
    [
        (Finding.INTRACRANIAL_HEMORRHAGE, JPEGLSLossless),
        (Finding.PNEUMOTHORAX, JPEG2000Lossless),
        (Finding.FRACTURE, RLELossless),
        (Finding.PULMONARY_EMBOLISM, ExplicitVRLittleEndian),
    ],
)
def test_files_parse_with_dcmtk_and_pydicom_and_pixels_round_trip(finding, syntax, tmp_path):
    study = phantom_generate(finding, positive=True, seed=21)
    paths = phantom_write(study, out_dir=tmp_path, seed=21, transfer_syntax=str(syntax))
    assert len(paths) == study.pixels.shape[0]
    dump = subprocess.run(["dcmdump", *map(str, paths)], capture_output=True, text=True)
    assert dump.returncode == 0, dump.stderr
    errors = [line for line in (dump.stdout + dump.stderr).splitlines() if line.startswith("E:")]
    assert not errors
    volume, datasets = read_back(paths)
    assert {str(ds.file_meta.TransferSyntaxUID) for ds in datasets} == {str(syntax)}
    tolerance = 1.0 if study.modality == "CT" else 1.0 / 4095 + 1e-6
    assert np.abs(volume - study.pixels).max() <= tolerance


def test_ct_geometry_tags_agree_with_the_volume(tmp_path):
    study = phantom_generate(Finding.PULMONARY_EMBOLISM, positive=False, seed=3)
    paths = phantom_write(study, out_dir=tmp_path, seed=3, transfer_syntax="explicit")
    _, datasets = read_back(paths)
    positions = np.array([float(ds.ImagePositionPatient[2]) for ds in datasets])
    assert np.allclose(np.diff(positions), study.slice_thickness, atol=1e-3)
    first = datasets[0]
    assert [float(v) for v in first.PixelSpacing] == pytest.approx(list(study.pixel_spacing))
    assert float(first.SliceThickness) == pytest.approx(study.slice_thickness)
    assert float(first.SpacingBetweenSlices) == pytest.approx(study.slice_thickness)
    assert [float(v) for v in first.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    assert first.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    assert first.ContrastBolusAgent and first.StudyDescription == "CTPA CHEST W CONTRAST"
    assert float(first.RescaleIntercept) == -1024
    assert str(first.PatientID).startswith("PH")
    assert first.PatientName.family_name in {
        "Phantom",
        "Synthetic",
        "Testperson",
        "Simulated",
        "Demo",
    }


def test_radiographs_read_back_bright_dense_for_both_photometric_interpretations(tmp_path):
    seen: dict[str, tuple[PhantomStudy, list[Path]]] = {}
    for seed in range(40):
        study = phantom_generate(Finding.PNEUMOTHORAX, positive=seed % 2 == 0, seed=seed)
        if study.photometric not in seen:
            paths = phantom_write(study, out_dir=tmp_path / str(seed), seed=seed)
            seen[study.photometric] = (study, paths)
        if len(seen) == 2:
            break
    assert set(seen) == {"MONOCHROME1", "MONOCHROME2"}
    for photometric, (study, paths) in seen.items():
        image, datasets = read_back(paths)
        ds = datasets[0]
        assert ds.PhotometricInterpretation == photometric
        assert ds.SOPClassUID in {"1.2.840.10008.5.1.4.1.1.1", "1.2.840.10008.5.1.4.1.1.1.1"}
        assert ds.Modality == study.modality and ds.ViewPosition in {"PA", "AP"}
        assert int(ds.BitsStored) == 12 and int(ds.pixel_array.max()) <= 4095
        assert np.abs(image - study.pixels).max() <= 1.0 / 4095 + 1e-6
        # bright = dense: the spine column is brighter than the lung fields beside it
        rows = slice(90, 150)
        middle = image[0, rows, 118:138].mean()
        lungs = np.concatenate([image[0, rows, 50:80], image[0, rows, 176:206]], axis=1).mean()
        assert middle > lungs + 0.1


EXPECTED_LESION = {
    Finding.INTRACRANIAL_HEMORRHAGE: (55.0, 90.0),
    Finding.PULMONARY_EMBOLISM: (-50.0, 100.0),
    Finding.FRACTURE: (-100.0, 200.0),
}


@pytest.mark.parametrize("finding", CT_FINDINGS)
def test_ct_positives_draw_their_lesion_only_on_labelled_slices_at_the_expected_density(finding):
    low, high = EXPECTED_LESION[finding]
    subtypes = set()
    for seed in range(8):
        study = phantom_generate(finding, positive=True, seed=seed)
        subtypes.add(study.subtype)
        assert study.positive and study.size in {"small", "medium", "large"}
        assert study.lesion_mask.shape == study.pixels.shape
        assert study.slice_labels.sum() >= 2
        assert np.array_equal(study.slice_labels, study.lesion_mask.any(axis=(1, 2)))
        lesion = study.pixels[study.lesion_mask]
        assert low <= lesion.mean() <= high, (study.subtype, lesion.mean())
        around = dilate(study.lesion_mask, steps=2, through_slices=True) & ~study.lesion_mask
        if finding is Finding.PULMONARY_EMBOLISM:
            # the defect sits inside an opacified artery
            contrast = study.pixels[around & (study.pixels > 150)]
            assert contrast.size > 0 and contrast.mean() > 200, study.subtype
        if finding is Finding.FRACTURE:
            # the lucent line breaks bone: cortex on either side of it
            assert np.percentile(study.pixels[around], 95) > 500, study.subtype
    assert len(subtypes) >= 2


@pytest.mark.parametrize("finding", list(Finding))
def test_negatives_have_no_lesion(finding):
    for seed in range(4):
        study = phantom_generate(finding, positive=False, seed=seed)
        assert not study.positive and study.size == ""
        assert not study.lesion_mask.any() and not study.slice_labels.any()


def test_head_confounders_are_denser_than_blood_or_confined_to_the_skull_base():
    calcified = next(
        study
        for seed in range(60)
        if (
            study := phantom_generate(Finding.INTRACRANIAL_HEMORRHAGE, positive=False, seed=seed)
        ).subtype
        == "calcification"
    )
    brain = (calcified.pixels > 0) & (calcified.pixels < 100)
    assert brain.any()
    assert (calcified.pixels[:, 40:90, 40:90] > 150).any()  # the calcification itself


def test_pneumothorax_is_darker_than_the_same_place_on_the_other_side():
    """Air without lung: more lucent than the mirrored region of the other lung, which still
    holds aerated lung and its vessel markings."""
    for seed in range(8):
        study = phantom_generate(Finding.PNEUMOTHORAX, positive=True, seed=seed)
        image, mask = study.pixels[0], study.lesion_mask[0]
        assert mask.sum() > 100
        assert not (mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())
        mirrored = mask[:, ::-1]
        assert image[mask].mean() < image[mirrored].mean() - 0.02, study.subtype


def test_synth_study_command_writes_a_study(tmp_path, capsys):
    call_command(
        "synth_study",
        finding="pneumothorax",
        label="negative",
        seed=5,
        out=tmp_path,
    )
    labels = json.loads((tmp_path / "labels.json").read_text())
    files = sorted(tmp_path.glob("*.dcm"))
    assert labels["finding"] == "pneumothorax" and labels["positive"] is False
    assert len(files) == 1 and len(labels["slice_labels"]) == 1
    assert "pneumothorax" in capsys.readouterr().out


def test_synth_study_command_lists_allowed_values_for_a_bad_finding_or_label(tmp_path):
    with pytest.raises(CommandError, match="intracranial_hemorrhage"):
        call_command("synth_study", finding="stroke", label="positive", seed=1, out=tmp_path)
    with pytest.raises(CommandError, match="positive"):
        call_command("synth_study", finding="fracture", label="maybe", seed=1, out=tmp_path)


def test_labels_json_names_every_instance_and_boxes_the_lesion_slices(tmp_path):
    study = phantom_generate(Finding.INTRACRANIAL_HEMORRHAGE, positive=True, seed=4)
    paths = phantom_write(study, out_dir=tmp_path, seed=4)
    labels = json.loads((tmp_path / "labels.json").read_text())
    by_uid = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID: p for p in paths}
    assert set(labels["slice_labels"]) == set(by_uid)
    assert sum(labels["slice_labels"].values()) == int(study.slice_labels.sum())
    assert set(labels["lesion_boxes"]) == {u for u, v in labels["slice_labels"].items() if v}
    for uid, (row0, col0, row1, col1) in labels["lesion_boxes"].items():
        index = int(pydicom.dcmread(by_uid[uid], stop_before_pixels=True).InstanceNumber) - 1
        inside = study.lesion_mask[index, row0:row1, col0:col1]
        assert inside.sum() == study.lesion_mask[index].sum()


def test_ed_mix_is_seeded_and_mostly_head_ct():
    first = [next(mix) for mix in [ed_mix(7)] for _ in range(200)]
    again = [next(mix) for mix in [ed_mix(7)] for _ in range(200)]
    assert first == again
    kinds = [finding for finding, _, _ in first]
    assert kinds.count(Finding.INTRACRANIAL_HEMORRHAGE) > kinds.count(Finding.FRACTURE)
    assert 20 < sum(positive for _, positive, _ in first) < 100


def test_phantom_study_send_stores_every_instance_on_a_dcmtk_listener(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    received = tmp_path / "received"
    received.mkdir()
    listener = subprocess.Popen(
        ["storescp", "+xa", "-aet", "TRIAGE", "-od", str(received), str(port)],
        env={**os.environ, "TCP_NODELAY": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        study = phantom_generate(Finding.INTRACRANIAL_HEMORRHAGE, positive=True, seed=2)
        stored = phantom_study_send(
            study=study,
            seed=2,
            host="127.0.0.1",
            port=port,
            called_ae="TRIAGE",
            calling_ae="TESTSCU",
        )
    finally:
        listener.terminate()
        listener.wait(timeout=10)
    assert stored == study.pixels.shape[0] == len(list(received.iterdir()))
