"""An HL7 v2 peer in its own process, on python-hl7's MLLP server: the RIS that receives ORU.

    python tests/hl7_peer.py --port P --record FILE [--answer aa|ae|silent] [--delay SECONDS]

Each message received is appended to FILE as one JSON line (control id, type, the message, the
answer given); `aa` acknowledges, `ae` answers an application error with a reason, `silent`
reads and never answers (the RIS hung); `--delay` answers that long after the message came (a
slow RIS).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

import hl7
import hl7.mllp


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--record", type=Path, required=True)
    parser.add_argument("--answer", choices=["aa", "ae", "silent"], default="aa")
    parser.add_argument("--delay", type=float, default=0.0)
    options = parser.parse_args()

    async def serve(reader: hl7.mllp.HL7StreamReader, writer: hl7.mllp.HL7StreamWriter) -> None:
        try:
            while not writer.is_closing():
                message = await reader.readmessage()
                msh = message.segment("MSH")
                with options.record.open("a") as record:
                    record.write(
                        json.dumps(
                            {
                                "control_id": str(msh(10)),
                                "type": str(msh(9)),
                                "message": str(message),
                                "answer": options.answer,
                            }
                        )
                        + "\n"
                    )
                if options.answer == "silent":
                    continue
                if options.delay:
                    await asyncio.sleep(options.delay)
                ack = message.create_ack("AA" if options.answer == "aa" else "AE")
                if options.answer == "ae":
                    ack.segment("MSA").assign_field("Unknown patient at this RIS", 3)
                writer.writemessage(ack)
                await writer.drain()
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()

    async def run() -> None:
        server = await hl7.mllp.start_hl7_server(
            serve, host="127.0.0.1", port=options.port, encoding="utf-8"
        )
        async with server:
            await server.serve_forever()

    asyncio.run(run())


if __name__ == "__main__":
    main()
