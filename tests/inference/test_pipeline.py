"""The pre-processing pipeline on real DICOM files: HU, windows, slice order and compressed
syntaxes."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless

from inference import pipeline
from worklist.dicom.synthetic import StudySpec, write_study


def test_hounsfield_units_of_pydicoms_ct_example():
    path = Path(get_testdata_file("CT_small.dcm"))
    stored = pydicom.dcmread(path).pixel_array

    series = pipeline.decode_series([path])

    # CT_small: RescaleSlope 1, RescaleIntercept -1024.
    assert series.pixels[0, 0, 0] == pytest.approx(float(stored[0, 0]) - 1024)
    assert series.pixels.min() == pytest.approx(float(stored.min()) - 1024)
    assert series.pixels.max() == pytest.approx(float(stored.max()) - 1024)


def test_windows_map_hounsfield_units_to_unit_range():
    hu = np.array([[-1000.0, 0.0, 40.0, 80.0, 1000.0]], dtype=np.float32)

    brain = pipeline.window(hu, center=40, width=80)

    assert brain.tolist() == [[0.0, 0.0, 0.5, 1.0, 1.0]]


def test_slices_are_ordered_by_position_not_file_order(tmp_path):
    paths = write_study(StudySpec(slices=12), seed=5, out_dir=tmp_path)
    shuffled = paths[:]
    random.Random(1).shuffle(shuffled)

    series = pipeline.decode_series(shuffled)

    assert np.all(np.diff(series.positions) > 0)
    expected = [str(pydicom.dcmread(path).SOPInstanceUID) for path in paths]  # written in order
    assert series.sop_instance_uids == expected


@pytest.mark.parametrize("syntax", [RLELossless, JPEGLSLossless, JPEG2000Lossless])
def test_compressed_transfer_syntaxes_decode_to_the_same_hounsfield_units(tmp_path, syntax):
    original = Path(get_testdata_file("CT_small.dcm"))
    ds = pydicom.dcmread(original)
    ds.compress(syntax)
    compressed = tmp_path / "compressed.dcm"
    ds.save_as(compressed)

    assert pydicom.dcmread(compressed).file_meta.TransferSyntaxUID == syntax
    np.testing.assert_array_equal(
        pipeline.decode_series([compressed]).pixels, pipeline.decode_series([original]).pixels
    )


@pytest.mark.parametrize("name", ["JPEG2000.dcm", "MR_small_RLE.dcm", "SC_rgb_jpeg_dcmtk.dcm"])
def test_pydicom_examples_in_other_syntaxes_decode_or_fail_clearly(name):
    path = Path(get_testdata_file(name))
    if pydicom.dcmread(path).get("SamplesPerPixel", 1) == 3:
        with pytest.raises(pipeline.DecodeError, match="grayscale"):
            pipeline.decode_series([path])
    else:
        assert pipeline.decode_series([path]).pixels.ndim == 3


def test_corrupt_pixel_data_is_a_decode_error(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 3]
    broken = tmp_path / "broken.dcm"
    ds.save_as(broken)

    with pytest.raises(pipeline.DecodeError, match="cannot decode"):
        pipeline.decode_series([broken])


def test_ct_inputs_stack_windows_and_neighbours():
    hu = np.stack([np.full((32, 32), value, dtype=np.float32) for value in (0, 40, 80)])

    inputs = pipeline.ct_slice_inputs(hu, size=16, windows=[[40, 80], [0, 1000]], neighbours=1)

    assert inputs.shape == (3, 6, 16, 16)
    # Slice 0 in the brain window: previous (edge repeats slice 0), itself, next.
    assert inputs[0, :3, 0, 0].tolist() == [0.0, 0.0, 0.5]
    assert inputs[1, :3, 0, 0].tolist() == [0.0, 0.5, 1.0]


def test_aggregation_and_key_slice():
    probabilities = np.array([0.1, 0.9, 0.7, 0.2], dtype=np.float32)

    assert pipeline.aggregate(probabilities, method="max") == (pytest.approx(0.9), 1)
    assert pipeline.aggregate(probabilities, method="topk_mean:2") == (pytest.approx(0.8), 1)


def test_heat_map_is_a_png_of_the_key_image(tmp_path):
    image = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    activation = np.zeros((8, 8), dtype=np.float32)
    activation[2, 5] = 3.0

    png = pipeline.heat_map_png(image, activation, caption="demo", max_side=256)

    path = tmp_path / "heat.png"
    path.write_bytes(png)
    picture = np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)
    assert picture.shape == (256, 256, 3)
    hot = picture[2 * 32 + 16, 5 * 32 + 16]  # the centre of the hot cell is tinted red
    cold = picture[6 * 32 + 16, 1 * 32 + 16]
    assert hot[0] - hot[2] > 60 and abs(int(cold[0]) - int(cold[2])) < 10
