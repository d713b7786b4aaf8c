"""Turning a user's device name (``--device cuda:1``) into a :class:`torch.device`.

Bottom layer: imports only torch, so every command and engine can call it. A bad name is the
user's to fix, so it is a ``ValueError`` naming the flag (the CLI prints it as one line); torch
itself raises ``RuntimeError`` for an unknown device type, which reads as a bug in labelemb.
"""

from __future__ import annotations

import torch

__all__ = ["parse_device"]


def parse_device(text: str | torch.device, flag: str = "--device") -> torch.device:
    """``text`` as a device that exists on this machine, else a ``ValueError`` naming ``flag``.

    Accepts what :class:`torch.device` accepts (``cpu``, ``cuda``, ``cuda:1``, ``mps``, ...),
    then checks that the device type is available here and, with an index, that the index is
    below the number of such devices: a typo or a missing GPU fails before any work starts.
    """
    try:
        device = torch.device(text)
    except (RuntimeError, TypeError, ValueError):
        # torch's own text lists twenty device types, most of them unusable here.
        raise ValueError(
            f"{flag} {text!r} is not a device name; use cpu, cuda, cuda:N or mps"
        ) from None
    if device.type == "cpu":
        return device
    # torch.cuda, torch.mps, torch.xpu, ... each expose is_available(); "meta" and other
    # device types with no such module cannot hold a model being trained.
    backend = getattr(torch, device.type, None)
    is_available = getattr(backend, "is_available", None)
    if is_available is None or not is_available():
        raise ValueError(
            f"{flag} {text!r}: no {device.type} device is available on this machine; "
            f"use {flag} cpu"
        )
    count = getattr(backend, "device_count", None)
    if device.index is not None and count is not None and device.index >= count():
        raise ValueError(
            f"{flag} {text!r}: this machine has {count()} {device.type} device(s), "
            f"numbered from 0"
        )
    return device
