"""What both halves of Pilot's HTTP serving need: the body limit and the
one-line JSON errors. Imports nothing heavy (pilot.httpserver loads at
start-up, pilot.httphandler with the first request)."""
from __future__ import annotations

import json

MAX_BODY = 1 << 20  # bytes of a request body an endpoint accepts (the control API's cap)
# environ key of the request's socket: a streaming answer (`/v3/events`)
# watches it to notice a client that went away while nothing was written.
CONNECTION = "pilot.connection"


def one_line(text: str, limit: int = 200) -> str:
    """`text` as a single log line, cut to `limit` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."


def error_body(message: str) -> bytes:
    """A JSON error document, one line."""
    return (json.dumps({"error": message}) + "\n").encode()


def json_headers(body: bytes) -> list:
    return [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
