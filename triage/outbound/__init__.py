"""Results out to the hospital: DICOM SC preview + SR to PACS, HL7 ORU to the RIS, through the
outbox (`services`); each standard's objects built in its own module from plain values."""
