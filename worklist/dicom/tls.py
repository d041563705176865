"""TLS contexts for DICOM (PS3.15 B.9, the BCP 195 profile: TLS 1.2 or later), from the PEM
files configuration names: the listener's (server) and, for results sent to a PACS, the
sender's (client)."""

from __future__ import annotations

import ssl

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def listener_tls_context() -> ssl.SSLContext | None:
    """The listener's context, or None when DICOM_TLS_CERTIFICATE is not set (plain TCP)."""
    certificate, key = settings.DICOM_TLS_CERTIFICATE, settings.DICOM_TLS_PRIVATE_KEY
    if not certificate and not key:
        if settings.DICOM_TLS_CLIENT_CA:
            raise ImproperlyConfigured("DICOM_TLS_CLIENT_CA needs DICOM_TLS_CERTIFICATE and _KEY")
        return None
    if not (certificate and key):
        raise ImproperlyConfigured("DICOM TLS needs both DICOM_TLS_CERTIFICATE and _PRIVATE_KEY")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certificate, key)
        if settings.DICOM_TLS_CLIENT_CA:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(settings.DICOM_TLS_CLIENT_CA)
    except (OSError, ssl.SSLError) as unusable:
        raise ImproperlyConfigured(f"DICOM TLS files unusable: {unusable}") from unusable
    return context


def sender_tls_context() -> ssl.SSLContext:
    """The context results are sent to a TLS PACS with: its certificate verified (against
    OUTBOUND_DICOM_TLS_CA, else the system's CAs) and its host name checked."""
    context = ssl.create_default_context(cafile=settings.OUTBOUND_DICOM_TLS_CA or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.OUTBOUND_DICOM_TLS_CERTIFICATE:
        context.load_cert_chain(
            settings.OUTBOUND_DICOM_TLS_CERTIFICATE, settings.OUTBOUND_DICOM_TLS_PRIVATE_KEY or None
        )
    return context
