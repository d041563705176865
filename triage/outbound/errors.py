"""How sending a result can end, short of delivery; light to import (no DICOM or HL7 stack), so
every process that only records results need not load the senders."""


class ObjectNotBuilt(ValueError):
    """The source data cannot make this object (the reason names no patient)."""


class DeliveryDeferred(Exception):
    """Not delivered this time; the message waits and is sent again."""


class DeliveryRefused(Exception):
    """The peer refused it; sending the same again would get the same answer."""
