"""Studies as they arrive: DICOM and DICOMweb ingest, studies, and the reading worklist."""
