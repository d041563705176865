"""DICOM status codes this product answers (PS3.4 Annex B storage statuses)."""

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
CANNOT_UNDERSTAND = 0xC000
CANNOT_UNDERSTAND_TRUNCATED = 0xC001
MISSING_UIDS = 0xC002
PROCESSING_FAILURE = 0xC0FF  # an unexpected error on our side; nothing was stored
