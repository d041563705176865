"""DICOM TLS with certificates made in the test (openssl): the listener, configured with a
certificate, a key and a client CA, stores what DCMTK's `storescu +tls` sends with a client
certificate of that CA, and refuses plain TCP and a client certificate of another CA; results
go out over TLS to DCMTK's `storescp +tls` with its certificate verified."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pydicom
import pytest

from tests.conftest import child_environment, dicom_scp_start, free_port, wait_for_port
from tests.dicom_peers import _dcmtk_env
from triage.models import AuditEvent
from worklist.dicom.synthetic import StudySpec, write_study
from worklist.models import Instance


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def authority(folder: Path, name: str) -> None:
    """A CA `name` (name.key, name.crt), and a certificate it signs for `name`-host (localhost,
    127.0.0.1) and one for `name`-client."""
    folder.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        f"/CN={name} test CA",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.crt",
        cwd=folder,
    )
    (folder / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for leaf in ("host", "client"):
        _openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            f"/CN={name}-{leaf}",
            "-keyout",
            f"{name}-{leaf}.key",
            "-out",
            f"{name}-{leaf}.csr",
            cwd=folder,
        )
        _openssl("x509", "-req", "-in", f"{name}-{leaf}.csr", "-CA", f"{name}.crt", "-CAkey",
                 f"{name}.key", "-CAcreateserial", "-days", "2", "-extfile", "san.ext",
                 "-out", f"{name}-{leaf}.crt", cwd=folder)  # fmt: skip


def storescu_tls(port: int, path: Path, *, folder: Path, client: str | None) -> str:
    args = ["storescu", "-v", "-aet", "STORESCU", "-aec", "TRIAGE"]
    if client is not None:
        args += ["+tls", f"{client}-client.key", f"{client}-client.crt", "+cf", "site.crt"]
    args += ["127.0.0.1", str(port), str(path)]
    run = subprocess.run(args, cwd=folder, capture_output=True, text=True, timeout=60,
                         env=_dcmtk_env())  # fmt: skip
    return run.stdout + run.stderr


@pytest.fixture
def certificates(tmp_path: Path) -> Path:
    folder = tmp_path / "pki"
    authority(folder, "site")
    authority(folder, "other")
    return folder


def test_the_listener_speaks_tls_to_senders_of_its_ca_only(
    transactional_db, tmp_path, certificates
):
    port = free_port()
    env = {**child_environment(), "DICOM_TLS_CERTIFICATE": str(certificates / "site-host.crt"),
           "DICOM_TLS_PRIVATE_KEY": str(certificates / "site-host.key"),
           "DICOM_TLS_CLIENT_CA": str(certificates / "site.crt")}  # fmt: skip
    with open(tmp_path / "dicom_scp.log", "ab") as log:
        listener = dicom_scp_start(port, log, env=env)
    try:
        wait_for_port(port, process=listener)
        first, second, third = write_study(StudySpec(slices=3), seed=81, out_dir=tmp_path / "s")

        sent = storescu_tls(port, first, folder=certificates, client="site")
        assert "Received Store Response (Success)" in sent, sent
        uid = str(pydicom.dcmread(first, stop_before_pixels=True).SOPInstanceUID)
        assert Instance.objects.filter(sop_instance_uid=uid).exists()

        plain = storescu_tls(port, second, folder=certificates, client=None)  # no TLS
        foreign = storescu_tls(port, third, folder=certificates, client="other")
        for refused in (plain, foreign):
            assert "Received Store Response (Success)" not in refused, refused
        assert Instance.objects.count() == 1
        # Each refused handshake audited, with OpenSSL's reason (written as the listener drops
        # the sender, which may be after the sender has given up).
        refusals = AuditEvent.objects.filter(action="access.denied", channel="dicom")
        deadline = time.monotonic() + 10
        while refusals.count() < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        denied = [event.detail for event in refusals]
        assert [item["reason"] for item in denied] == ["TLS handshake failed"] * 2, denied
        assert all(re.fullmatch(r"[A-Z0-9_]+", item["tls"]) for item in denied), denied
        assert listener.poll() is None  # and still serving
        again = storescu_tls(port, second, folder=certificates, client="site")
        assert "Received Store Response (Success)" in again, again
    finally:
        listener.terminate()
        listener.wait(timeout=10)


def test_results_go_out_over_tls_to_a_pacs_whose_certificate_checks(
    tmp_path, certificates, settings
):
    from triage.outbound.transport import dicom_store
    from worklist.dicom.tls import sender_tls_context

    port = free_port()
    received = tmp_path / "pacs"
    received.mkdir()
    pacs = subprocess.Popen(
        ["storescp", "-aet", "PACS", "+tls", "site-host.key", "site-host.crt", "+cf", "site.crt",
         "-od", str(received), str(port)],
        cwd=certificates, env=_dcmtk_env(), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_for_port(port, process=pacs)
        datasets = [pydicom.dcmread(path) for path in
                    write_study(StudySpec(slices=2), seed=82, out_dir=tmp_path / "s")]  # fmt: skip
        settings.OUTBOUND_DICOM_TLS_CA = str(certificates / "site.crt")
        settings.OUTBOUND_DICOM_TLS_CERTIFICATE = str(certificates / "site-client.crt")
        settings.OUTBOUND_DICOM_TLS_PRIVATE_KEY = str(certificates / "site-client.key")
        dicom_store(datasets=datasets, host="127.0.0.1", port=port, called_ae="PACS",
                    calling_ae="TRIAGE", tls=sender_tls_context())  # fmt: skip
        deadline = time.monotonic() + 10
        while len(list(received.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(list(received.iterdir())) == 2
        # A PACS whose certificate is not of the CA we trust is not sent anything.
        settings.OUTBOUND_DICOM_TLS_CA = str(certificates / "other.crt")
        from triage.outbound.errors import DeliveryDeferred

        with pytest.raises(DeliveryDeferred):
            dicom_store(datasets=datasets, host="127.0.0.1", port=port, called_ae="PACS",
                        calling_ae="TRIAGE", tls=sender_tls_context())  # fmt: skip
    finally:
        pacs.terminate()
        pacs.wait(timeout=10)
