"""The OpenAPI schema's shape beyond what REST framework can see: every operation documents the
errors it answers (`{"detail": reason}` JSON), so that a client, and schemathesis in the tests,
know every status the API can give."""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import Direction

DETAIL = {"type": "object", "properties": {"detail": {"type": "string"}}}

# Status -> when. Every operation may answer these (a bad value, no credentials, a role or
# location that does not reach it, an object that does not exist or is not the user's to see).
ERRORS = {
    "400": "A value in the path, query or body is malformed; `detail` says which.",
    "401": "No credentials, or credentials not accepted.",
    "403": "The user's role does not reach this operation (or a CSRF failure for a session).",
    "404": "No such object, or not one this user may see.",
}
# And these where the operation can meet them.
WRITE_ERRORS = {
    "409": "The object is in a state that refuses this action (claimed by another reader...).",
    "415": "The body's media type is not one this operation reads.",
}
NEGOTIATED_ERRORS = {"406": "None of the media types in Accept is one this operation answers."}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": DETAIL}}}


class TriageAutoSchema(AutoSchema):  # type: ignore[misc]
    def _get_response_bodies(self, direction: Direction = "response") -> dict[str, Any]:
        responses: dict[str, Any] = super()._get_response_bodies(direction)
        extra = dict(ERRORS)
        if self.method in ("POST", "PUT", "PATCH", "DELETE"):
            extra.update(WRITE_ERRORS)
        if self.path.startswith("/dicomweb/"):
            extra.update(NEGOTIATED_ERRORS)
        for code, description in extra.items():
            responses.setdefault(code, _error(description))
        return responses
