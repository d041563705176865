"""Run the DICOM C-STORE / C-ECHO listener (optionally several processes on one port)."""

from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import sys
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from worklist.dicom.scp import (
    listener_start,
    listening_socket_open,
    wait_forever,
)


class Command(BaseCommand):
    help = "Receive studies over DICOM (C-STORE) and answer C-ECHO."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="0.0.0.0")  # noqa: S104 - a listener for scanners
        parser.add_argument("--port", type=int, default=11112)
        parser.add_argument("--ae-title", default="TRIAGE")
        parser.add_argument(
            "--processes",
            type=int,
            default=1,
            help="listener processes sharing one listening socket, taking associations in turn",
        )
        # Internal: the listening socket a `--processes N` parent hands to each of its processes.
        parser.add_argument("--listen-fd", type=int, default=None, help=argparse.SUPPRESS)

    def handle(self, *args: Any, **options: Any) -> None:
        if options["processes"] > 1:
            self._supervise(options)
            return
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        shared = (
            None if options["listen_fd"] is None else socket.socket(fileno=options["listen_fd"])
        )
        server = listener_start(
            host=options["host"],
            port=options["port"],
            ae_title=options["ae_title"],
            shared_socket=shared,
        )
        self.stdout.write(
            f"DICOM listener {options['ae_title']} on {options['host']}:{options['port']}",
        )
        self.stdout.flush()
        wait_forever(stop)
        server.shutdown()

    def _supervise(self, options: dict[str, Any]) -> None:
        listening = listening_socket_open(host=options["host"], port=options["port"])
        base = [
            sys.executable,
            sys.argv[0],
            "dicom_scp",
            "--host",
            options["host"],
            "--port",
            str(listening.getsockname()[1]),
            "--ae-title",
            options["ae_title"],
            "--listen-fd",
            str(listening.fileno()),
        ]
        children = [
            subprocess.Popen(
                base,
                pass_fds=[listening.fileno()],
            )
            for _ in range(options["processes"])
        ]

        def stop_children(*_: Any) -> None:
            for child in children:
                child.terminate()

        signal.signal(signal.SIGTERM, stop_children)
        signal.signal(signal.SIGINT, stop_children)
        for child in children:
            child.wait()
        listening.close()
