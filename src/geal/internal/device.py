"""The one device resolver: ``auto`` -> CUDA when available, else CPU; explicit devices checked.

Extraction and selection both resolve ``--device`` here, so a name that does not exist
is the same one-line error whichever side meets it first. What a device is good at
(``--precision auto``: bfloat16 only where it is fast) is answered here too.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from geal.errors import GealError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto"`` into CUDA when available else CPU; check that an explicit device exists.

    Raises:
        GealError: an unknown device name, or a device this machine does not have.
    """
    if isinstance(device, torch.device):
        dev = device
    elif device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError) as exc:
            raise GealError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise GealError(
                f"device {device!s} requested but no CUDA GPU is available; use --device cpu"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise GealError(
                f"device {device!s} requested but only {torch.cuda.device_count()} GPU(s) exist"
            )
    elif dev.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise GealError(
                f"device {device!s} requested but MPS is not available; use --device cpu"
            )
    elif dev.type != "cpu":
        raise GealError(f"device {device!s} is not supported; use auto, cpu, cuda or cuda:N")
    return dev


PRECISIONS = ("auto", "fp32", "bf16")


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> ``bf16`` where the device has fast bfloat16, else ``fp32``.

    Raises:
        GealError: a precision other than those in :data:`PRECISIONS`.
    """
    if precision not in PRECISIONS:
        raise GealError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        try:
            fast = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            fast = False
        return "bf16" if fast else "fp32"
    return "fp32"


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op thread count set to ``n`` for the block, restored after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
