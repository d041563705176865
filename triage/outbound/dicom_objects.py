"""The DICOM objects a result becomes, built with highdicom: a Secondary Capture preview (the
key image with its heat map, the notices burned in) and a Structured Report (TID 1500
Measurement Report) that states the finding, the score, the algorithm and what it looked at.

Both join the source study in series of their own, with UIDs derived from the result.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import highdicom as hd
import numpy as np
from highdicom.sr import CodedConcept
from PIL import Image, ImageDraw
from pydicom import Dataset
from pydicom.sr.codedict import codes

from triage.outbound.errors import ObjectNotBuilt
from triage.outbound.result import (
    LOCAL_SCHEME,
    NOT_DETECTED,
    NOT_FOR_DIAGNOSIS,
    SUSPECTED,
    ResultFacts,
)

MANUFACTURER = "ED triage worklist (open source)"
SC_SERIES_NUMBER = 9901
SR_SERIES_NUMBER = 9902


@dataclass(frozen=True)
class BuiltObject:
    dataset: Dataset
    sop_instance_uid: str


def _banner_lines(facts: ResultFacts) -> list[str]:
    verdict = "suspected" if facts.flagged else "not detected"
    return [
        NOT_FOR_DIAGNOSIS.upper(),
        f"{facts.finding_label}: {verdict} (score {facts.score:.2f})",
        f"Model {facts.model_identity}",
    ]


def preview_pixels(*, heat_map_png: bytes, facts: ResultFacts) -> np.ndarray:
    """The heat-map picture under a black banner carrying the notices, as RGB uint8."""
    try:
        picture = Image.open(io.BytesIO(heat_map_png)).convert("RGB")
    except Exception as exc:  # PIL raises many kinds for a bad file
        raise ObjectNotBuilt(f"the heat map image cannot be read: {type(exc).__name__}") from exc
    lines = _banner_lines(facts)
    banner = 14 * len(lines) + 8
    width = max(picture.width, 6 * max(len(line) for line in lines) + 12)
    canvas = Image.new("RGB", (width, picture.height + banner), (0, 0, 0))
    canvas.paste(picture, (0, banner))
    draw = ImageDraw.Draw(canvas)
    for row, line in enumerate(lines):
        draw.text((6, 4 + 14 * row), line, fill=(255, 255, 0) if row == 0 else (255, 255, 255))
    return np.asarray(canvas, dtype=np.uint8)


# Type 2 attributes of the Patient and Study modules: a source may leave them out (a scanner
# should not, a converter often does); the objects we write carry them, empty when unknown.
_TYPE2_FROM_SOURCE = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyID", "StudyDate",
    "StudyTime", "AccessionNumber", "ReferringPhysicianName",
)  # fmt: skip


def source_header(source: Dataset) -> Dataset:
    """The source instance's header without its pixels, type 2 attributes present."""
    header = Dataset()
    header.update({tag: element for tag, element in source.items() if tag < 0x7FE00000})
    for keyword in _TYPE2_FROM_SOURCE:
        if keyword not in header:
            setattr(header, keyword, "")
    return header


def _orientation(source: Dataset) -> tuple[str, str]:
    """Patient orientation of the preview's rows and columns: the source's, or an axial
    slice's (CT) as a radiograph's is stated in its own tags."""
    stated = source.get("PatientOrientation")
    if stated and len(stated) == 2 and all(stated):
        return str(stated[0]), str(stated[1])
    return ("L", "P")


def secondary_capture_build(
    *, source: Dataset, heat_map_png: bytes, facts: ResultFacts
) -> BuiltObject:
    """The preview: a new series in the source's study, burned-in and tagged "not for
    diagnosis" with the finding and the model."""
    pixels = preview_pixels(heat_map_png=heat_map_png, facts=facts)
    sop_uid = facts.uid("sc-instance")
    try:
        sc = hd.sc.SCImage.from_ref_dataset(
            ref_dataset=source,
            pixel_array=pixels,
            photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
            bits_allocated=8,
            coordinate_system=hd.CoordinateSystemNames.PATIENT,
            patient_orientation=_orientation(source),
            series_instance_uid=facts.uid("sc-series"),
            series_number=SC_SERIES_NUMBER,
            sop_instance_uid=sop_uid,
            instance_number=1,
            manufacturer=MANUFACTURER,
            transfer_syntax_uid="1.2.840.10008.1.2.1",
        )
    except (AttributeError, ValueError, TypeError) as exc:
        raise ObjectNotBuilt(f"the preview cannot be built: {exc}") from exc
    for keyword in ("BodyPartExamined", "Laterality"):  # dciodvfy judges one by the other
        if source.get(keyword):
            setattr(sc, keyword, source.get(keyword))
    if "Laterality" not in sc and "BodyPartExamined" not in sc:
        sc.Laterality = ""  # type 2C: whether the part is paired is unknown
    sc.SeriesDescription = f"{NOT_FOR_DIAGNOSIS} (preview)"[:64]
    sc.ImageComments = " | ".join(_banner_lines(facts))[:10240]
    sc.BurnedInAnnotation = "YES"
    sc.RecognizableVisualFeatures = "NO"
    sc.ConversionType = "WSD"  # workstation: made by software from another image
    sc.DerivationDescription = f"AI heat map of {facts.finding_label} on the key image"[:1024]
    sc.SoftwareVersions = facts.model_version[:64]
    sc.ManufacturerModelName = facts.model_name[:64]
    return BuiltObject(dataset=sc, sop_instance_uid=sop_uid)


SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def preview_reference(*, source: Dataset, facts: ResultFacts) -> Dataset:
    """What the report needs of the preview to refer to it (its UIDs and study), without
    rendering its pixels again: the UIDs are the result's, so they are the preview's."""
    reference = Dataset()
    reference.update({tag: element for tag, element in source.items()})
    reference.SOPClassUID = SECONDARY_CAPTURE
    reference.SOPInstanceUID = facts.uid("sc-instance")
    reference.SeriesInstanceUID = facts.uid("sc-series")
    reference.Modality = "OT"
    return reference


def _code(pair: tuple[str, str], scheme: str = "SCT") -> CodedConcept:
    value, meaning = pair
    return CodedConcept(value=value, scheme_designator=scheme, meaning=meaning)


def structured_report_build(
    *, source: Dataset, preview: Dataset | None, facts: ResultFacts
) -> BuiltObject:
    """TID 1500: one measurement group for the finding, with the qualitative evaluation
    (suspected / not detected), the score, the algorithm and the images it refers to."""
    algorithm = hd.sr.AlgorithmIdentification(
        name=facts.model_name[:64],
        version=facts.model_version[:64],
        parameters=[facts.model_identity[:64], NOT_FOR_DIAGNOSIS],
        family=codes.DCM.ArtificialIntelligence,
        manufacturer=MANUFACTURER,
    )
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=facts.uid("device"),
            name=facts.model_name[:64],
            manufacturer_name=MANUFACTURER,
            model_name=facts.model_identity[:64],
        ),
    )
    images = [source] + ([preview] if preview is not None else [])
    try:
        group = hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(
                uid=facts.uid("tracking"), identifier=f"AI {facts.finding_label}"[:64]
            ),
            finding_type=_code(facts.finding_code),
            algorithm_id=algorithm,
            qualitative_evaluations=[
                hd.sr.QualitativeEvaluation(
                    name=_code(facts.finding_code),
                    value=_code(SUSPECTED if facts.flagged else NOT_DETECTED),
                )
            ],
            measurements=[
                hd.sr.Measurement(
                    name=CodedConcept(
                        value="AISCORE", scheme_designator=LOCAL_SCHEME, meaning="AI triage score"
                    ),
                    value=round(float(facts.score), 6),
                    unit=CodedConcept(value="1", scheme_designator="UCUM", meaning="no units"),
                    algorithm_id=algorithm,
                )
            ],
            source_images=[
                hd.sr.SourceImageForMeasurementGroup.from_source_image(image) for image in images
            ],
        )
        report = hd.sr.MeasurementReport(
            observation_context=hd.sr.ObservationContext(observer_device_context=observer),
            procedure_reported=CodedConcept(
                value="363679005", scheme_designator="SCT", meaning="Imaging"
            ),
            imaging_measurements=[group],
        )
        sop_uid = facts.uid("sr-instance")
        sr = hd.sr.ComprehensiveSR(
            evidence=images,
            content=report,
            series_instance_uid=facts.uid("sr-series"),
            series_number=SR_SERIES_NUMBER,
            sop_instance_uid=sop_uid,
            instance_number=1,
            manufacturer=MANUFACTURER,
            is_complete=True,
            is_final=False,  # preliminary: no radiologist has verified it
        )
    except (AttributeError, ValueError, TypeError) as exc:
        raise ObjectNotBuilt(f"the report cannot be built: {exc}") from exc
    sr.SeriesDescription = f"{NOT_FOR_DIAGNOSIS} (report)"[:64]
    return BuiltObject(dataset=sr, sop_instance_uid=sop_uid)
