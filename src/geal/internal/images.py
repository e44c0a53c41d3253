"""Any decoded picture -> 8-bit RGB, keeping the brightness its pixel values stand for.

PIL's own ``convert("RGB")`` clips wider pixel types to 0..255: a 16-bit grey PNG
(mode ``I;16``) becomes an almost white picture and a float image in 0..1 a black one.
Models see the result without complaint, so :func:`to_rgb` scales such pixels by their
real range instead:

- ``I;16`` (and its byte orders): the 16-bit range, 0..65535 -> 0..255.
- ``I`` (32-bit integers) and ``F`` (32-bit floats) hold data of unknown depth: the
  smallest of 0..1 (floats only), 0..255 and 0..65535 that holds every pixel, else the
  picture's own minimum..maximum. Non-finite floats count as 0.

16-bit RGB(A) and grey-alpha PNGs already arrive as 8-bit ``RGB``/``RGBA`` from PIL
(high byte kept), and every other mode converts with PIL as usual.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

WIDE_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})

# the standard ranges tried, in order, for pixels whose type does not say their depth
_RANGES = ((0.0, 255.0), (0.0, 65535.0))


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as an 8-bit RGB picture (the same object when it already is one)."""
    if image.mode == "RGB":
        return image
    if image.mode not in WIDE_MODES:
        return image.convert("RGB")
    values = np.asarray(image, dtype=np.float64)
    if image.mode.startswith("I;16"):
        low, high = 0.0, 65535.0
    else:
        low, high = _value_range(values, is_float=image.mode == "F")
    scaled = (np.nan_to_num(values, nan=0.0, posinf=high, neginf=low) - low) * (
        255.0 / (high - low)
    )
    grey = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return Image.fromarray(grey).convert("RGB")


def load_image(im: Image.Image, draft: int | None = None) -> Image.Image:
    """Decode an opened image as 8-bit RGB, a JPEG at the smallest DCT scale that still
    covers ``draft`` x ``draft`` when ``draft`` is given (see :meth:`geal.pools.Pool.load`)."""
    if draft is not None:
        im.draft("RGB", (draft, draft))
    im.load()
    return to_rgb(im)


def decode_bytes(data: bytes, draft: int | None = None) -> Image.Image:
    """An image stored as encoded bytes (a Parquet row, a tar member), decoded by Pillow as
    8-bit RGB (``draft`` as for :func:`load_image`); decoding errors are raised."""
    with Image.open(io.BytesIO(data)) as im:
        return load_image(im, draft)


def _value_range(values: np.ndarray, *, is_float: bool) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 255.0
    lo, hi = float(finite.min()), float(finite.max())
    ranges = ((0.0, 1.0), *_RANGES) if is_float else _RANGES
    for low, high in ranges:
        if lo >= low and hi <= high:
            return low, high
    if hi == lo:  # one value outside every standard range: a flat mid-grey picture
        return lo - 1.0, hi + 1.0
    return lo, hi
