"""Device selection and mixed precision: one code path on CPU and GPU."""

import contextlib
from typing import ContextManager, Union

import torch

DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")


def resolve_device(device: Union[str, torch.device, None] = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an explicit name is honoured or refused with a clear message.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if isinstance(device, torch.device):
        return device
    name = (device or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind = name.split(":")[0]
    if kind not in DEVICE_CHOICES:
        raise ValueError(f"unknown device '{device}'; choose one of {', '.join(DEVICE_CHOICES)}")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no CUDA GPU is available; use --device cpu or auto")
    if kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device 'mps' was asked for but Apple MPS is not available; use --device cpu or auto")
    return torch.device(name)


def autocast_for(device: torch.device) -> ContextManager:
    """bf16/fp16 autocast on CUDA, nothing elsewhere (CPU runs in float32)."""
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()
