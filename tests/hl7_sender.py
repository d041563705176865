"""An HL7 v2 sender in its own process (python-hl7's MLLP client): the RIS / ADT feed.

    python tests/hl7_sender.py --port P FILE...

Each FILE holds one message (segments on lines); they go over one connection, in order, and
each answer is printed as one JSON line: {"code": MSA-1, "control_id": MSA-2, "text": MSA-3},
or {"code": null} when the listener closed without answering. A FILE ending in .raw is sent as
bytes, unframed (a broken peer).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

import hl7
import hl7.mllp


async def send(port: int, files: list[Path]) -> None:
    reader, writer = await hl7.mllp.open_hl7_connection("127.0.0.1", port, encoding="utf-8")
    for path in files:
        if path.suffix == ".raw":
            writer.write(path.read_bytes())
        else:
            text = path.read_text().strip().replace("\n", "\r")
            writer.writeblock(text.encode("utf-8"))
        await writer.drain()
        try:
            answer = await asyncio.wait_for(reader.readmessage(), 20)
        except (asyncio.IncompleteReadError, ConnectionError):
            print(json.dumps({"code": None}), flush=True)
            return
        msa = answer.segment("MSA")
        print(
            json.dumps(
                {
                    "code": str(msa(1)),
                    "control_id": str(msa(2)),
                    "text": str(msa(3)) if len(msa) > 3 else "",
                }
            ),
            flush=True,
        )
    writer.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("files", nargs="+", type=Path)
    options = parser.parse_args()
    asyncio.run(send(options.port, options.files))


if __name__ == "__main__":
    main()
