"""The pre-processing pipeline on real DICOM files: HU, windows, slice order and compressed
syntaxes."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless

from inference import pipeline
from inference.registry import (
    SHIPPED_MODELS_DIR,
    Aggregation,
    AggregationMethod,
    ModelOutputs,
    Window,
    registry_load,
)
from tests.inference.onnx_wire import outputs_reversed
from triage.findings import Finding
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

    inputs = pipeline.ct_slice_inputs(
        hu, size=16, windows=[Window(40, 80), Window(0, 1000)], neighbours=1
    )

    assert inputs.shape == (3, 6, 16, 16)
    # Slice 0 in the brain window: previous (edge repeats slice 0), itself, next.
    assert inputs[0, :3, 0, 0].tolist() == [0.0, 0.0, 0.5]
    assert inputs[1, :3, 0, 0].tolist() == [0.0, 0.5, 1.0]


def test_aggregation_and_key_slice():
    probabilities = np.array([0.1, 0.9, 0.7, 0.2], dtype=np.float32)

    top_two = Aggregation(AggregationMethod.TOPK_MEAN, 2)

    assert pipeline.aggregate(probabilities, method=Aggregation.parse("max")) == (
        pytest.approx(0.9),
        1,
    )
    assert pipeline.aggregate(probabilities, method=top_two) == (pytest.approx(0.8), 1)
    assert Aggregation.parse("topk_mean:2") == top_two and str(top_two) == "topk_mean:2"


def cpu_session(model: bytes | str) -> ort.InferenceSession:
    return ort.InferenceSession(model, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def ich_model() -> tuple[bytes, np.ndarray]:
    """The shipped head CT model's bytes and a batch of inputs of its shape."""
    model = (SHIPPED_MODELS_DIR / "intracranial_hemorrhage" / "model.onnx").read_bytes()
    inputs = np.random.default_rng(3).random((5, 6, 64, 64), dtype=np.float32)
    return model, inputs


def test_outputs_are_read_by_the_cards_names_whatever_order_the_model_lists_them(ich_model):
    model, inputs = ich_model
    card = registry_load([SHIPPED_MODELS_DIR]).for_finding(Finding.INTRACRANIAL_HEMORRHAGE)[0]
    shipped, swapped = cpu_session(model), cpu_session(outputs_reversed(model))
    assert [output.name for output in swapped.get_outputs()] == ["cam", "logit"]
    # Read by position, the swapped model's first output is the map, not the logit.
    assert swapped.run(None, {"input": inputs})[0].shape == (5, 8, 8)

    expected = pipeline.predict(shipped, inputs, outputs=card.outputs, batch_size=2)
    probabilities, maps = pipeline.predict(swapped, inputs, outputs=card.outputs, batch_size=2)

    assert probabilities.shape == (5,) and maps.shape == (5, 8, 8)
    np.testing.assert_array_equal(probabilities, expected[0])
    np.testing.assert_array_equal(maps, expected[1])


def test_outputs_the_model_does_not_have_are_an_error_naming_them(ich_model):
    model, inputs = ich_model

    with pytest.raises(pipeline.OutputsError, match="no output named 'heat'.*'logit', 'cam'"):
        pipeline.predict(
            cpu_session(model), inputs, outputs=ModelOutputs(logit="logit", activation_map="heat")
        )


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
