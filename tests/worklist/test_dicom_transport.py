"""The listener's association reactors wait on events (worklist/dicom/transport.py): what they
must still do that pynetdicom's polling loops did - answer, release, notice a peer that vanished,
and time out an idle association."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from worklist.dicom.scp import ListenerServer
from worklist.dicom.transport import EventDrivenAssociation


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def echo_listener() -> Iterator[dict[str, Any]]:
    seen: dict[str, Any] = {"echoes": 0, "classes": set(), "ended": threading.Event()}

    def on_echo(event: Any) -> int:
        seen["echoes"] += 1
        seen["classes"].add(type(event.assoc))
        return 0x0000

    def on_end(event: Any) -> None:
        seen["ended"].set()

    ae = AE(ae_title="EVENTS")
    ae.network_timeout = 1.5
    ae.add_supported_context(Verification)
    port = _free_port()
    server = ae.make_server(
        ("127.0.0.1", port),
        evt_handlers=[
            (evt.EVT_C_ECHO, on_echo),
            (evt.EVT_RELEASED, on_end),
            (evt.EVT_ABORTED, on_end),
            (evt.EVT_CONN_CLOSE, on_end),
        ],
        server_class=ListenerServer,
    )
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    seen["port"] = port
    try:
        yield seen
    finally:
        server.shutdown()
        server.server_close()


def test_many_echoes_over_one_association_are_answered_and_released(echo_listener):
    run = subprocess.run(
        ["echoscu", "-aec", "EVENTS", "--repeat", "200", "127.0.0.1", str(echo_listener["port"])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert echo_listener["echoes"] == 200
    assert echo_listener["classes"] == {EventDrivenAssociation}
    assert echo_listener["ended"].wait(5)


def test_an_idle_association_is_still_timed_out(echo_listener):
    ae = AE(ae_title="IDLE")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", echo_listener["port"], ae_title="EVENTS")
    assert assoc.is_established
    try:
        # the listener's network timeout is 1.5 s: it ends the association, we say nothing
        deadline = time.monotonic() + 10
        while assoc.is_established and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not assoc.is_established
        assert echo_listener["ended"].wait(5)
    finally:
        if assoc.is_established:
            assoc.abort()


def test_a_peer_that_vanishes_mid_association_ends_its_threads(echo_listener):
    before = threading.active_count()
    ae = AE(ae_title="GONE")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", echo_listener["port"], ae_title="EVENTS")
    assert assoc.is_established and assoc.send_c_echo().Status == 0x0000
    assoc.dul.socket.socket.close()  # no release, no abort: the connection just goes
    assert echo_listener["ended"].wait(5)
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= before
    assoc.kill()


def test_associations_leave_no_file_descriptors_behind(echo_listener):
    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    ae = AE(ae_title="MANY")
    ae.add_requested_context(Verification)
    before = open_fds()
    for _ in range(20):
        assoc = ae.associate("127.0.0.1", echo_listener["port"], ae_title="EVENTS")
        assert assoc.is_established and assoc.send_c_echo().Status == 0x0000
        assoc.release()
    deadline = time.monotonic() + 5
    while open_fds() > before + 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert open_fds() <= before + 2


@pytest.mark.parametrize(
    ("status", "sop_class", "instance", "message_id"),
    [
        (0x0000, "1.2.840.10008.5.1.4.1.1.2", "1.2.826.0.1.3680043.2.1125.1", 1),
        (0xA700, "1.2.840.10008.5.1.4.1.1.1.1", "1.2.3", 65535),  # odd-length UIDs padded
        (0xB000, None, None, 9),
    ],
)
def test_a_store_response_is_the_bytes_pynetdicom_would_send(
    status: int, sop_class: str | None, instance: str | None, message_id: int
) -> None:
    from pynetdicom.dimse_messages import C_STORE_RSP
    from pynetdicom.dimse_primitives import C_STORE
    from pynetdicom.dsutils import encode

    from worklist.dicom.transport import store_response_command

    primitive = C_STORE()
    primitive.MessageIDBeingRespondedTo = message_id
    primitive.Status = status
    if sop_class:
        primitive.AffectedSOPClassUID = sop_class
        primitive.AffectedSOPInstanceUID = instance
    message = C_STORE_RSP()
    message.primitive_to_message(primitive)
    assert store_response_command(primitive) == encode(message.command_set, True, True)


def test_storescu_hears_each_status_and_a_bound_sent_handler_still_sees_the_response(
    tmp_path: Any,
) -> None:
    from pydicom import examples
    from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

    statuses = iter([0x0000, 0xA700])
    sent: list[str] = []
    ae = AE(ae_title="STORES")
    ae.add_supported_context(CTImageStorage)
    port = _free_port()
    server = ae.make_server(
        ("127.0.0.1", port),
        evt_handlers=[(evt.EVT_C_STORE, lambda event: next(statuses))],
        server_class=ListenerServer,
    )
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    path = tmp_path / "ct.dcm"
    examples.ct.save_as(path)
    try:
        ok = subprocess.run(["storescu", "127.0.0.1", str(port), str(path)], capture_output=True,
                            text=True, timeout=30)  # fmt: skip
        assert ok.returncode == 0, ok.stderr
        refused = subprocess.run(["storescu", "-v", "127.0.0.1", str(port), str(path)],
                                 capture_output=True, text=True, timeout=30)  # fmt: skip
        assert "Received Store Response (Refused: OutOfResources)" in refused.stderr
        # an association with its own EVT_DIMSE_SENT handler gets pynetdicom's own encoding
        server.bind(evt.EVT_DIMSE_SENT, lambda event: sent.append(type(event.message).__name__))
        statuses = iter([0x0000])
        again = subprocess.run(["storescu", "127.0.0.1", str(port), str(path)],
                               capture_output=True, text=True, timeout=30)  # fmt: skip
        assert again.returncode == 0 and sent == ["C_STORE_RSP"]
    finally:
        server.shutdown()


@pytest.mark.parametrize(("uid", "maximum_pdu", "fast"), [
    ("1.2.3.4", 16382, True),
    ("1.2.3.4", 0, True),  # 0: no limit
    ("1.2.3.é", 16382, False),  # not ASCII (pynetdicom writes it as Latin-1)
    ("1.2.3.4", 60, False),  # the command would not fit one PDU of the peer's size
])  # fmt: skip
def test_the_direct_encoding_steps_aside_where_pynetdicom_must_answer(
    monkeypatch: pytest.MonkeyPatch, uid: str, maximum_pdu: int, fast: bool
) -> None:
    from types import SimpleNamespace

    from pynetdicom.dimse import DIMSEServiceProvider
    from pynetdicom.dimse_primitives import C_STORE

    from worklist.dicom.transport import StoreResponseDIMSE

    sent: list[Any] = []
    fallen_back: list[Any] = []
    monkeypatch.setattr(
        DIMSEServiceProvider, "send_msg", lambda self, primitive, cx: fallen_back.append(primitive)
    )
    assoc = SimpleNamespace(
        is_requestor=False,
        requestor=SimpleNamespace(maximum_length=maximum_pdu),
        dul=SimpleNamespace(send_pdu=sent.append),
        get_handlers=lambda event: [],
    )
    dimse = StoreResponseDIMSE(assoc)  # type: ignore[arg-type]
    primitive = C_STORE()
    primitive.MessageIDBeingRespondedTo = 3
    primitive.Status = 0x0000
    primitive.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    primitive.AffectedSOPInstanceUID = uid
    dimse.send_msg(primitive, 1)
    assert (len(sent), len(fallen_back)) == ((1, 0) if fast else (0, 1))
