"""HTTP errors of the model server: a stable code, a status, a message meant for the
client, and optional per-field details. Nothing else reaches a response body."""

from __future__ import annotations

from typing import Any

from keel.errors import KeelError

__all__ = ["STATUS", "ServeError"]

#: Every error code the server answers with, and its HTTP status.
STATUS: dict[str, int] = {
    "invalid_json": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "model_not_found": 404,
    "method_not_allowed": 405,
    "payload_too_large": 413,
    "too_many_rows": 413,
    "unsupported_media_type": 415,
    "invalid_input": 422,
    "invalid_tensor": 400,  # a tensor of another shape or datatype than declared, or NaN
    "internal": 500,
    "not_ready": 503,
}


class ServeError(KeelError):
    """An answer other than success. ``details`` lists one finding per bad field:
    ``{"row": 0, "field": "age", "expected": "number", "got": "'abc'"}``."""

    def __init__(
        self,
        code: str,
        message: str,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = STATUS[code]
        self.message = message
        self.details = details or []
        self.headers = headers or {}

    def body(self, request_id: str | None, flat: bool = False) -> dict[str, Any]:
        """``{"error": {"code", "message", "details", "request_id"}}``; ``flat`` (the Open
        Inference Protocol's shape, which its clients parse): ``{"error": message, "code",
        "details", "request_id"}``."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            error["details"] = self.details
        if request_id:
            error["request_id"] = request_id
        if flat:
            return {**error, "error": error.pop("message")}
        return {"error": error}
