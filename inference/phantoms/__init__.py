"""Deterministic synthetic DICOM phantoms with ground truth, for training, tests and demo traffic.

`phantom_generate` draws a study for a finding (positive or a negative with a confounder);
`phantom_write` writes it as DICOM Part-10 files plus a labels.json.
"""

from inference.phantoms.study import PhantomStudy, phantom_generate
from inference.phantoms.writer import phantom_write

__all__ = ["PhantomStudy", "phantom_generate", "phantom_write"]
