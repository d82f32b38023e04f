"""Frame codecs of the bridge: png | jpeg | raw_rgb bytes <-> uint8 HxWx3 arrays, and resizing."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from metabonk.envs.bridge.protocol import ProtocolError
from metabonk.envs.bridge.schema import FRAME_ENCODINGS


def encode_frame(pixels_HWC: np.ndarray, encoding: str,
                 jpeg_quality: int = 90) -> tuple[dict[str, Any], bytes]:
    """Encode one uint8 RGB frame; returns the header's frame object (without "bytes") and the bytes."""
    if encoding not in FRAME_ENCODINGS:
        raise ProtocolError("frame_error", f"unknown frame encoding {encoding!r} (known: {FRAME_ENCODINGS})")
    px = np.ascontiguousarray(pixels_HWC, dtype=np.uint8)
    if px.ndim != 3 or px.shape[2] != 3:
        raise ProtocolError("frame_error", f"a frame must be HxWx3 uint8, got shape {px.shape}")
    h, w = px.shape[:2]
    if encoding == "raw_rgb":
        data = px.tobytes()
    else:
        buf = io.BytesIO()
        if encoding == "png":
            Image.fromarray(px).save(buf, format="PNG", compress_level=1)
        else:
            Image.fromarray(px).save(buf, format="JPEG", quality=jpeg_quality)
        data = buf.getvalue()
    return {"encoding": encoding, "width": w, "height": h}, data


def decode_frame(meta: dict[str, Any], data: bytes) -> np.ndarray:
    """Decode frame bytes described by the header's frame object into uint8 [height, width, 3]."""
    enc, w, h = meta.get("encoding"), int(meta.get("width", 0)), int(meta.get("height", 0))
    if enc == "raw_rgb":
        if len(data) != w * h * 3:
            raise ProtocolError("frame_error",
                                f"raw_rgb frame of {w}x{h} needs {w * h * 3} bytes, got {len(data)}")
        return np.frombuffer(data, np.uint8).reshape(h, w, 3).copy()
    if enc not in ("png", "jpeg"):
        raise ProtocolError("frame_error", f"unknown frame encoding {enc!r}")
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format != enc.upper():
                raise ProtocolError("frame_error", f"frame declared {enc} but holds {img.format}")
            if img.size != (w, h):
                raise ProtocolError("frame_error", f"frame declared {w}x{h} but the image is "
                                                   f"{img.size[0]}x{img.size[1]}")
            return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
    except UnidentifiedImageError as e:  # its message shows a BytesIO repr, not what went wrong
        raise ProtocolError("frame_error", f"{enc} frame does not decode: the bytes are not a {enc} image") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise ProtocolError("frame_error", f"{enc} frame does not decode: {e}") from e


def resize_frame(pixels_HWC: np.ndarray, size: int) -> np.ndarray:
    """Resize a frame to size x size (whole frame, aspect not kept, so HUD edges survive); no-op if equal."""
    if pixels_HWC.shape[0] == size and pixels_HWC.shape[1] == size:
        return pixels_HWC
    img = Image.fromarray(pixels_HWC).resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(img, dtype=np.uint8)
