"""Device selection and mixed precision: one code path on CPU and GPU."""

import contextlib
from typing import ContextManager, Optional, Union

import torch

DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")
PRECISION_CHOICES = ("auto", "float32", "bfloat16")


class DeviceUnavailable(ValueError):
    """The device asked for is unknown or not present on this machine; the message says what to use instead."""


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
        raise DeviceUnavailable(f"unknown device '{device}'; choose one of {', '.join(DEVICE_CHOICES)}")
    if kind == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailable("device 'cuda' was asked for but no CUDA GPU is available; use --device cpu or auto")
    if kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise DeviceUnavailable("device 'mps' was asked for but Apple MPS is not available; use --device cpu or auto")
    return torch.device(name)


def autocast_for(device: torch.device) -> ContextManager:
    """bf16/fp16 autocast on CUDA, nothing elsewhere (CPU runs in float32)."""
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 matrix products natively (AVX512-BF16 or AMX): bf16 is then about twice as
    fast as float32 for the model; elsewhere it is emulated and slower, so it is not used."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def resolve_precision(precision: Optional[str], device: torch.device) -> torch.dtype:
    """The dtype of the image encoder and mask decoder at inference on ``device``.

    ``auto``: bfloat16 on a CPU with native bf16 (see :func:`cpu_has_bf16`), float32 on other CPUs and on MPS; on CUDA
    float32 weights (the GPU runs them under autocast, see :func:`autocast_for`). ``float32`` and ``bfloat16`` are
    honoured as asked.

    Example:
        >>> resolve_precision("float32", torch.device("cpu"))
        torch.float32
        >>> resolve_precision("auto", torch.device("cpu")) in (torch.float32, torch.bfloat16)
        True
    """
    name = (precision or "auto").lower()
    if name not in PRECISION_CHOICES:
        raise ValueError(f"unknown precision '{precision}'; choose one of {', '.join(PRECISION_CHOICES)}")
    if name == "auto":
        return torch.bfloat16 if device.type == "cpu" and cpu_has_bf16() else torch.float32
    return torch.bfloat16 if name == "bfloat16" else torch.float32
