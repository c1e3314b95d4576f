"""Where a model runs and in what arithmetic: the device (`--device`), mixed precision
(`--precision`: bf16 autocast where the hardware computes it natively, fp16 with a
gradient scaler on older CUDA GPUs, else fp32) and CPU threads (`--threads`)."""

from __future__ import annotations

from contextlib import nullcontext

import torch

from textrnn.errors import UsageError

INFERENCE_PRECISIONS = ("auto", "fp32", "bf16")  # tagging, transliterating, generating


FP16_DEVICES = ("cuda",)  # device types whose fp16 autocast covers the recurrent layers


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' means bf16 where the hardware computes it natively, else fp16 on a CUDA GPU
    (with a gradient scaler), else fp32."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if _cuda_bf16_native() else "fp16"
    if device.type == "cpu":
        try:
            return "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"
        except (AttributeError, RuntimeError):
            return "fp32"
    return "fp32"


def _cuda_bf16_native() -> bool:
    """bf16 computed by the GPU itself (Ampere and later), not emulated (slowly) on older ones."""
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # torch < 2.3: no emulation to rule out
        return torch.cuda.is_bf16_supported()


def autocast(precision: str, device: torch.device):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "fp16":
        return torch.autocast(device.type, dtype=torch.float16)
    return nullcontext()


def check_precision(precision: str, device: torch.device) -> None:
    if precision == "fp16" and device.type not in FP16_DEVICES:
        raise UsageError(
            f"--precision fp16 needs a CUDA GPU (this run is on {device.type}); use bf16 or fp32"
        )


def default_device(name: str = "auto") -> torch.device:
    """auto picks CUDA, then MPS, then CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name not in ("cpu", "cuda", "mps"):
        raise UsageError(f"--device must be one of auto, cpu, cuda, mps, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA GPU is available on this machine")
    if name == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise UsageError("--device mps: MPS is not available on this machine")
    return torch.device(name)


def set_threads(threads: int) -> None:
    """Apply a --threads option: 0 keeps PyTorch's default (one per core)."""
    if threads < 0:
        raise UsageError(f"--threads must not be negative, got {threads}")
    if threads:
        torch.set_num_threads(threads)
