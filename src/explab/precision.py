"""The floating-point precision a run trains in, and ``precision=auto``: mixed precision where the hardware
computes it natively, full precision where it would only be emulated.

bfloat16 autocast pays on GPUs from Ampere on and on CPUs with AVX512-BF16 or AMX. Elsewhere a CPU emulates
bfloat16 matrix products, several times slower than float32, so the same recipe that is fastest on one
machine is the slowest on the next; ``auto`` keeps a recipe fast on both.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from explab.utils.logging import get_logger

log = get_logger(__name__)

AUTO = "auto"
# torch.set_float32_matmul_precision's levels, most exact first: full float32, TensorFloat-32, bfloat16
MATMUL_PRECISIONS = ("highest", "high", "medium")


def device_kind(accelerator: str) -> str:
    """``cuda``, ``mps`` or ``cpu``: the device a Trainer with ``accelerator`` trains on, as Lightning picks it."""
    import torch

    accelerator = str(accelerator).lower()
    if accelerator == "cpu":
        return "cpu"
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "cuda"
    if accelerator in ("auto", "gpu", "mps") and torch.backends.mps.is_available():
        return "mps"
    return "cuda" if accelerator == "cuda" else "cpu"


def native_bf16(device: str) -> bool:
    """Whether ``device`` computes bfloat16 natively (a CUDA GPU from Ampere on; a CPU with AVX512-BF16 or AMX)."""
    import torch

    if device == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False))
    if device == "cpu":
        # torch.cpu's feature probes are private but stable; a torch without them has no native bfloat16 here
        probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(bool(getattr(torch.cpu, probe, lambda: False)()) for probe in probes)
    return False


def auto_precision(device: str, bf16_native: bool) -> str:
    """What ``precision=auto`` trains in: ``bf16-mixed`` where bfloat16 is native; on a CUDA GPU without it
    (before Ampere) fp16 autocast, ``16-mixed``, which those GPUs run natively; else ``32-true``."""
    if bf16_native:
        return "bf16-mixed"
    return "16-mixed" if device == "cuda" else "32-true"


def training_precision(trainer: Mapping[str, Any]) -> str:
    """The precision to give Lightning for the ``trainer`` config: ``auto`` resolved for this machine, any
    other value as it is. Warns when bfloat16 is asked for on a device that would emulate it."""
    asked = str(trainer.get("precision", "32-true"))
    device = device_kind(str(trainer.get("accelerator", "auto")))
    if asked == AUTO:
        native = native_bf16(device)
        chosen = auto_precision(device, native)
        log.info("precision=auto: %s (%s, bfloat16 %s)", chosen, device, "native" if native else "not native")
        return chosen
    # fp16 autocast does not exist on CPUs: Lightning runs 16-mixed there as bf16-mixed; 16-true is float16 itself
    if device == "cpu" and asked == "16-true" and not _native_fp16_cpu():
        log.warning(
            "trainer.precision=16-true on a CPU without AMX-FP16: float16 is emulated here and trains several "
            "times slower than 32-true. precision=auto picks what this machine runs natively",
        )
    elif asked.startswith(("bf16", "16")) and asked != "16-true" and device == "cpu" and not native_bf16(device):
        log.warning(
            "trainer.precision=%s on a CPU without AVX512-BF16 or AMX: bfloat16 is emulated here and trains "
            "several times slower than 32-true. precision=auto picks what this machine runs natively",
            asked,
        )
    return asked


def _native_fp16_cpu() -> bool:
    """Whether this CPU computes float16 natively (AMX-FP16), as torch's private probe reports it."""
    import torch

    return bool(getattr(torch.cpu, "_is_amx_fp16_supported", lambda: False)())


@contextmanager
def float32_matmul(precision: str | None) -> Iterator[None]:
    """Inside, float32 matrix products run at ``precision`` (``torch.set_float32_matmul_precision``); after, at
    what they ran before, so that one trial's choice does not carry into the next job of the same process.

    ``high`` lets a GPU with tensor cores (Ampere on) multiply in TensorFloat-32, ``medium`` too, and a CPU with
    AVX512-BF16 or AMX in bfloat16; ``highest``, torch's default, keeps full float32. None (the config
    of a run recorded before the key existed) is ``highest``, which those runs trained in.
    """
    import torch

    before, precision = torch.get_float32_matmul_precision(), precision or "highest"
    if precision != "highest":  # torch's default needs no word; anything else moves the numbers a little
        log.info("float32 matrix products at matmul_precision=%s", precision)
    torch.set_float32_matmul_precision(precision)
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)
