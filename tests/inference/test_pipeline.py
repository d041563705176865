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


# ---------------------------------------------------------------- storage and geometry variants
# Each variant is the same slices written another way, as scanners and PACS do: the decoded
# series (HU for CT) must not change, so a model sees the same anatomy.


def _hu_of(paths: list[Path]) -> np.ndarray:
    return pipeline.decode_series(paths).pixels


def _rewritten(paths: list[Path], out: Path, change) -> list[Path]:  # type: ignore[no-untyped-def]
    out.mkdir()
    written = []
    for path in paths:
        ds = pydicom.dcmread(path)
        hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        change(ds, hu)
        written.append(out / path.name)
        ds.save_as(written[-1], enforce_file_format=True)
    return written


def _unsigned_12_bit(ds, hu):  # type: ignore[no-untyped-def]
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, 0
    ds.RescaleIntercept = -1024
    ds.PixelData = np.clip(hu + 1024, 0, 4095).astype(np.uint16).tobytes()


def _slope_half(ds, hu):  # type: ignore[no-untyped-def]
    ds.RescaleSlope, ds.RescaleIntercept = 0.5, -2048
    ds.PixelData = np.round((hu + 2048) * 2).astype(np.uint16).tobytes()
    ds.PixelRepresentation = 0


def _slope_two(ds, hu):  # type: ignore[no-untyped-def]
    ds.RescaleSlope, ds.RescaleIntercept = 2, -1024
    ds.PixelData = np.round((hu + 1024) / 2).astype(np.int16).tobytes()


def _monochrome1(ds, hu):  # type: ignore[no-untyped-def]
    ds.PhotometricInterpretation = "MONOCHROME1"


@pytest.mark.parametrize(
    ("change", "tolerance"),
    [(_unsigned_12_bit, 0), (_slope_half, 0), (_slope_two, 1.0), (_monochrome1, 0)],
    ids=["unsigned-12-bit", "slope-0.5", "slope-2", "monochrome1"],
)
def test_a_ct_stored_another_way_decodes_to_the_same_hounsfield_units(tmp_path, change, tolerance):
    paths = write_study(StudySpec(slices=4), seed=11, out_dir=tmp_path / "signed")

    variant = _rewritten(paths, tmp_path / "variant", change)

    np.testing.assert_allclose(_hu_of(variant), _hu_of(paths), atol=tolerance)


@pytest.mark.parametrize("use_range", [False, True], ids=["value", "range"])
def test_ct_padding_is_air_whatever_its_stored_value(tmp_path, use_range):
    paths = write_study(StudySpec(slices=3), seed=12, out_dir=tmp_path / "plain")
    border = np.zeros(pydicom.dcmread(paths[0]).pixel_array.shape, dtype=bool)
    border[:6, :], border[:, :6] = True, True

    def pad(ds, hu):  # type: ignore[no-untyped-def]
        stored = ds.pixel_array.astype(np.int16)
        stored[border] = -2500 if use_range else -2000
        ds.add_new(0x00280120, "SS", -3000 if use_range else -2000)  # Pixel Padding Value
        if use_range:
            ds.add_new(0x00280121, "SS", -2000)  # Pixel Padding Range Limit
        ds.PixelData = stored.tobytes()

    padded = _hu_of(_rewritten(paths, tmp_path / "padded", pad))

    assert np.all(padded[:, border] == pipeline.AIR_HU)  # not -4524 HU
    np.testing.assert_array_equal(padded[:, ~border], _hu_of(paths)[:, ~border])


def _radiograph(path: Path, *, monochrome1: bool, padded: bool) -> Path:
    ds = pydicom.dcmread(path)
    ds.Modality = "CR"
    ds.Rows = ds.Columns = 64
    image = np.tile(np.linspace(1000, 3000, 64), (64, 1)).astype(np.uint16)  # dark -> dense
    if monochrome1:
        image = (4000 - image).astype(np.uint16)
    if padded:
        image[:, :16] = 0
        ds.add_new(0x00280120, "US", 0)  # Pixel Padding Value
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1, 0
    ds.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    ds.PixelData = image.tobytes()
    out = path.with_name(f"cr-{monochrome1}-{padded}.dcm")
    ds.save_as(out, enforce_file_format=True)
    return out


@pytest.mark.parametrize("monochrome1", [False, True], ids=["monochrome2", "monochrome1"])
def test_radiograph_padding_is_black_and_left_out_of_the_contrast(tmp_path, monochrome1):
    [path] = write_study(StudySpec(slices=1), seed=13, out_dir=tmp_path)

    image = pipeline.decode_series([_radiograph(path, monochrome1=monochrome1, padded=True)])
    image = image.pixels[0]

    assert np.all(image[:, :16] == 0.0)  # the collimator border, black
    field = image[:, 16:]
    assert field[:, 0].max() < 0.05 and field[:, -1].min() > 0.95  # full contrast in the field
    assert np.all(np.diff(field[0]) >= 0)  # bright = dense in both interpretations


@pytest.mark.parametrize("order", ["reversed", "shuffled"])
def test_a_tilted_gantry_series_is_ordered_along_its_slice_normal(tmp_path, order):
    paths = write_study(StudySpec(slices=8), seed=14, out_dir=tmp_path / "flat")
    tilt = np.deg2rad(20)
    row, column = np.array([1.0, 0, 0]), np.array([0, np.cos(tilt), -np.sin(tilt)])
    normal = np.cross(row, column)

    def tilted(ds, hu):  # type: ignore[no-untyped-def]
        index = int(ds.InstanceNumber) - 1
        ds.ImageOrientationPatient = [*row.tolist(), *column.tolist()]
        # Positions along the tilted normal, 2.5 mm apart, with a shift in y a tilt brings.
        ds.ImagePositionPatient = (normal * 2.5 * index + np.array([0, 40.0, 0])).tolist()
        ds.InstanceNumber = 8 - index  # numbered the other way round
        ds.SliceLocation = 0  # and no help from Slice Location

    files = _rewritten(paths, tmp_path / "tilted", tilted)
    files = files[::-1] if order == "reversed" else random.Random(3).sample(files, len(files))

    series = pipeline.decode_series(files)

    np.testing.assert_allclose(np.diff(series.positions), 2.5)
    np.testing.assert_array_equal(series.pixels, _hu_of(paths))


def test_neighbours_of_an_uneven_series_are_taken_at_the_true_distance():
    positions = np.array([0.0, 1.0, 2.0, 4.0, 5.0])  # one slice missing at 3 mm
    images = np.stack([np.full((2, 2), p, dtype=np.float32) for p in positions])

    stacked = pipeline.neighbour_stack(images, positions, 1)

    # The slice at 2 mm: 1 mm below is the slice at 1, 1 mm above lies between 2 and 4.
    assert stacked[2, :, 0, 0].tolist() == [1.0, 2.0, 3.0]
    assert stacked[3, :, 0, 0].tolist() == [3.0, 4.0, 5.0]
    assert stacked[0, :, 0, 0].tolist() == [0.0, 0.0, 1.0]  # beyond the end: the end slice
    even = np.arange(5, dtype=np.float64)
    np.testing.assert_array_equal(
        pipeline.neighbour_stack(images, even, 1), images[np.clip(np.arange(5)[:, None]
                                                                  + [-1, 0, 1], 0, 4)]
    )  # fmt: skip


def test_a_series_with_a_missing_slice_gives_the_model_interpolated_neighbours(tmp_path):
    paths = write_study(StudySpec(slices=6), seed=15, out_dir=tmp_path)
    whole = pipeline.decode_series(paths)
    gapped = pipeline.decode_series([path for i, path in enumerate(paths) if i != 3])
    windows = [Window(40, 80)]

    inputs = pipeline.ct_slice_inputs(
        gapped.pixels, size=128, windows=windows, neighbours=1, positions=gapped.positions
    )

    # Slice 2's upper neighbour (the missing slice 3) is halfway between slices 2 and 4.
    halfway = pipeline.window((whole.pixels[2] + whole.pixels[4]) / 2, center=40, width=80)
    np.testing.assert_allclose(inputs[2, 2], halfway, atol=1e-5)


def test_a_slice_beside_a_duplicate_position_keeps_itself_as_its_centre_channel():
    positions = np.array([0.0, 1.0, 1.0, 2.0, 4.0])  # two slices at 1 mm, a gap after 2 mm
    images = np.stack([np.full((2, 2), n, dtype=np.float32) for n in range(5)])

    stacked = pipeline.neighbour_stack(images, positions, 1)

    assert stacked[:, 1, 0, 0].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
