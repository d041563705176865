"""OHIF served beside the product on one origin, as a site's reverse proxy would: the product's
paths (/dicomweb/, /accounts/, /static/, /api/, /worklist/) go to its ASGI server, the rest are
OHIF's built files (index.html for the viewer's own routes). Run in its own process:

    python -m tests.ohif_site PORT OHIF_DIST APP_CONFIG PRODUCT_PORT

APP_CONFIG (deploy/ohif/app-config.js) is served as OHIF's `app-config.js`.
"""

from __future__ import annotations

import http.client
import mimetypes
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PRODUCT_PATHS = ("/dicomweb/", "/accounts/", "/static/", "/api/", "/worklist/")
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "trailer"}


def handler_for(dist: Path, config: Path, product_port: int) -> type[BaseHTTPRequestHandler]:
    class Site(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            sys.stderr.write(f"ohif-site {self.command} {self.path[:300]} {args[1:2]}\n")

        def do_GET(self) -> None:  # noqa: N802
            if self.path.startswith(PRODUCT_PATHS):
                self._forward()
            else:
                self._file()

        def do_POST(self) -> None:  # noqa: N802
            self._forward()

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            upstream = http.client.HTTPConnection("127.0.0.1", product_port, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            upstream.request(self.command, self.path, body=body, headers=headers)
            answer = upstream.getresponse()
            data = answer.read()
            self.send_response(answer.status)
            for key, value in answer.getheaders():
                if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            upstream.close()

        def _file(self) -> None:
            relative = self.path.split("?", 1)[0].lstrip("/")
            target = (dist / relative).resolve()
            if relative == "app-config.js":
                target = config
            elif not target.is_file() or not target.is_relative_to(dist):
                target = dist / "index.html"  # the viewer's own routes (/viewer, ...)
            data = target.read_bytes()
            kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
            if target.suffix == ".wasm":
                kind = "application/wasm"
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Site


def main() -> None:
    port, dist, config = int(sys.argv[1]), Path(sys.argv[2]).resolve(), Path(sys.argv[3])
    handler = handler_for(dist, config.resolve(), int(sys.argv[4]))
    ThreadingHTTPServer(("127.0.0.1", port), handler).serve_forever()


if __name__ == "__main__":
    main()
