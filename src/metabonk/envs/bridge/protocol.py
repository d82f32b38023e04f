"""Wire format of the MetaBonk bridge: length-prefixed messages of a JSON header and an optional frame.

Every message on the TCP stream is::

    uint32 big-endian  L          length of the payload that follows (bytes)
    uint32 big-endian  H          length of the JSON header (bytes), H <= L - 4
    H bytes                       the header: one UTF-8 JSON object with a "type"
    L - 4 - H bytes               the frame bytes (present only when the header has a "frame" object,
                                  whose "bytes" field must equal L - 4 - H)

docs/bridge.md is the full specification; `schema.py` holds the JSON schemas each header is checked against.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any

from metabonk.common.errors import MetabonkError

PROTOCOL_NAME = "metabonk-bridge"
PROTOCOL_VERSION = "1.0"
PROTOCOL_MAJOR = int(PROTOCOL_VERSION.split(".")[0])

DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
"""Payloads longer than this are refused before they are read (a 1920x1080 raw_rgb frame is ~6.2 MB)."""

_U32 = struct.Struct(">I")
_MIN_PAYLOAD = 4 + 2  # header length field + the smallest JSON object "{}"

ERROR_CODES = (
    "bad_length",        # a length field that cannot be right (too small, header longer than payload, ...)
    "oversized",         # payload longer than the receiver's limit
    "bad_json",          # header is not UTF-8 JSON, or not a JSON object
    "bad_schema",        # header does not match the schema of its type (unknown type included)
    "protocol_mismatch", # hello names another protocol
    "version_mismatch",  # hello names another major version
    "unexpected",        # a valid message at the wrong moment (step before reset, ...)
    "bad_action",        # an action the game cannot apply
    "frame_error",       # frame bytes that do not decode as the header says
    "timeout",           # the peer waited too long for the next message
    "busy",              # the game serves as many agents as it can; try later
    "internal",          # the peer failed while handling a valid message
)


class BridgeError(MetabonkError):
    """The bridge connection failed: refused, timed out, closed mid-episode, or the peer reported an error."""


class ProtocolError(BridgeError):
    """A message that breaks the protocol; `code` is one of ERROR_CODES (sent back in an `error` message)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class PeerClosed(BridgeError):
    """The peer closed the connection (cleanly between messages, or in the middle of one)."""


@dataclass
class Message:
    """One decoded message: its JSON header and the raw frame bytes (None when it carries no frame)."""

    header: dict[str, Any]
    frame: bytes | None = None

    @property
    def type(self) -> str:
        return str(self.header.get("type"))


MAX_JSON_INT = 2**63 - 1
"""Integers in a header must fit a signed 64-bit integer; numbers must be finite (no NaN, Infinity, 1e999)."""


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text[:40]} is too large (numbers must be finite)")
    return value


def _int64(text: str) -> int:
    value = int(text)
    if abs(value) > MAX_JSON_INT:
        raise ValueError(f"integer {text[:40]}... does not fit 64 bits")
    return value


def encode_message(header: dict[str, Any], frame: bytes | None = None,
                   max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> bytes:
    """Serialize one message; the header's "frame.bytes" is filled in from `frame`."""
    if frame is not None:
        if not isinstance(header.get("frame"), dict):
            raise ProtocolError("bad_schema", "frame bytes need a 'frame' object in the header")
        header = {**header, "frame": {**header["frame"], "bytes": len(frame)}}
    elif "frame" in header:
        raise ProtocolError("bad_schema", "header has a 'frame' object but no frame bytes were given")
    try:
        head = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as e:
        raise ProtocolError("bad_json", f"'{header.get('type')}' header is not JSON-serializable: {e}") from e
    body_len = 4 + len(head) + (len(frame) if frame is not None else 0)
    if body_len > max_bytes:
        raise ProtocolError("oversized", f"message of {body_len} bytes exceeds the {max_bytes}-byte limit")
    parts = [_U32.pack(body_len), _U32.pack(len(head)), head]
    if frame is not None:
        parts.append(frame)
    return b"".join(parts)


def decode_payload(payload: bytes) -> Message:
    """Split a payload (everything after the outer length) into header dict and frame bytes."""
    if len(payload) < _MIN_PAYLOAD:
        raise ProtocolError("bad_length", f"payload of {len(payload)} bytes is shorter than the minimum "
                                          f"{_MIN_PAYLOAD}")
    (head_len,) = _U32.unpack_from(payload, 0)
    if head_len < 2 or head_len > len(payload) - 4:
        raise ProtocolError("bad_length", f"header length {head_len} does not fit a payload of "
                                          f"{len(payload)} bytes")
    head_bytes = payload[4:4 + head_len]
    try:
        header = json.loads(head_bytes.decode("utf-8"), parse_constant=_reject_constant,
                            parse_float=_finite_float, parse_int=_int64)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ProtocolError("bad_json", f"header is not UTF-8 JSON: {e}") from e
    if not isinstance(header, dict):
        raise ProtocolError("bad_json", f"header must be a JSON object, got {type(header).__name__}")
    rest = payload[4 + head_len:]
    frame_meta = header.get("frame")
    if frame_meta is None:
        if rest:
            raise ProtocolError("bad_length", f"{len(rest)} bytes follow a header that declares no frame")
        return Message(header, None)
    declared = frame_meta.get("bytes") if isinstance(frame_meta, dict) else None
    if declared != len(rest):
        raise ProtocolError("bad_length", f"header declares a {declared}-byte frame but {len(rest)} follow")
    return Message(header, bytes(rest))


def _recv_exact(sock: socket.socket, n: int, *, mid_message: bool, deadline: float | None = None) -> bytes:
    """Read exactly n bytes; PeerClosed if the stream ends first, TimeoutError once `deadline` (a
    time.monotonic() value) passes, however the bytes trickle in."""
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("message not complete before its deadline")
            sock.settimeout(left)
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            where = "in the middle of a message" if (mid_message or got) else "between messages"
            raise PeerClosed(f"connection closed by peer {where}")
        got += k
    return bytes(buf)


def read_message(sock: socket.socket, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 deadline: float | None = None) -> Message:
    """Read one message from `sock`. Socket timeouts propagate as TimeoutError, as does a whole message not
    received by `deadline` (time.monotonic()); framing problems raise ProtocolError before an oversized payload
    is read."""
    (length,) = _U32.unpack(_recv_exact(sock, 4, mid_message=False, deadline=deadline))
    if length > max_bytes:
        raise ProtocolError("oversized", f"message of {length} bytes exceeds the {max_bytes}-byte limit")
    if length < _MIN_PAYLOAD:
        raise ProtocolError("bad_length", f"message length {length} is below the minimum {_MIN_PAYLOAD}")
    return decode_payload(_recv_exact(sock, length, mid_message=True, deadline=deadline))


def send_message(sock: socket.socket, header: dict[str, Any], frame: bytes | None = None,
                 max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
    """Encode and send one message (all bytes or an OSError)."""
    sock.sendall(encode_message(header, frame, max_bytes))


def error_header(code: str, message: str) -> dict[str, Any]:
    """The header of an `error` message."""
    return {"type": "error", "code": code if code in ERROR_CODES else "internal", "message": message[:2000]}


def parse_version(version: str) -> tuple[int, int]:
    """'MAJOR.MINOR' -> (major, minor); a malformed string is a ProtocolError."""
    try:
        major, minor = (int(p) for p in version.split("."))
    except ValueError as e:
        raise ProtocolError("bad_schema", f"version must be 'MAJOR.MINOR', got {version!r}") from e
    return major, minor


def check_hello(header: dict[str, Any]) -> None:
    """Refuse a hello from another protocol or another major version, with a message naming both sides."""
    name = header.get("protocol")
    if name != PROTOCOL_NAME:
        raise ProtocolError("protocol_mismatch", f"peer speaks protocol {name!r}, expected {PROTOCOL_NAME!r}")
    major, _ = parse_version(str(header.get("version")))
    if major != PROTOCOL_MAJOR:
        raise ProtocolError(
            "version_mismatch",
            f"peer speaks {PROTOCOL_NAME} {header.get('version')}, this side speaks {PROTOCOL_VERSION} "
            f"(major versions must match)",
        )
