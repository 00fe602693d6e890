"""On a machine with a CUDA GPU: what a GPU run records about its own GPU, and nothing about others.

CI has no GPU, so these skip there; a session lent a GPU runs them (``bench/gpu_session.sh``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from explab.train import train
from tests.conftest import runs_in, tracking_uri_for

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; CI has none")


def _only_run(store: Path):
    (run,) = runs_in(store, "digits_cnn")
    return run


def _gpu_metrics(run) -> set[str]:
    return {key for key in run.data.metrics if key.startswith("system/gpu_")}


def test_a_gpu_run_records_its_own_gpu_use(compose_cfg, store: Path) -> None:
    train(compose_cfg("trainer=gpu", "trainer.max_epochs=10", "system_metrics_seconds=0.5"))
    run = _only_run(store)
    assert run.info.status == "FINISHED"
    gpus = {key.split("_")[1] for key in _gpu_metrics(run)}
    assert gpus == {"0"}, f"one GPU of {torch.cuda.device_count()} visible is this job's: {sorted(_gpu_metrics(run))}"
    assert run.data.metrics["system/gpu_0_memory_usage_megabytes"] > 0
    history = MlflowClient(tracking_uri_for(store)).get_metric_history(
        run.info.run_id, "system/gpu_0_utilization_percentage"
    )
    assert len(history) >= 2, "sampled through the fit, not once"
    assert run.data.tags["hardware.gpu"] == torch.cuda.get_device_name(0)
    assert run.data.tags["hardware.cuda"] == f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}"


def test_the_sampler_watches_the_gpu_cuda_gives_the_job(store: Path) -> None:
    """CUDA and NVML number GPUs differently; the handle kept must be the very device the job trains on."""
    import pynvml

    from explab.callbacks.system_metrics import start_sampler, stop_sampler

    uri = tracking_uri_for(store)
    run = MlflowClient(uri).create_run(MlflowClient(uri).create_experiment("gpu"))
    index = torch.cuda.device_count() - 1
    monitor = start_sampler(run.info.run_id, uri, 60, None, [index], resumed=False)
    try:
        (gpu,) = [m for m in monitor.monitors if hasattr(m, "gpu_handles")]
        (handle,) = gpu.gpu_handles
        nvml_uuid = pynvml.nvmlDeviceGetUUID(handle)
        nvml_uuid = nvml_uuid.decode() if isinstance(nvml_uuid, bytes) else nvml_uuid
        assert nvml_uuid.removeprefix("GPU-") == str(torch.cuda.get_device_properties(index).uuid)
    finally:
        stop_sampler(monitor)


def test_a_cpu_run_on_a_gpu_machine_reports_no_gpu(compose_cfg, store: Path) -> None:
    train(compose_cfg("trainer=cpu", "trainer.max_epochs=2", "system_metrics_seconds=0.5"))
    run = _only_run(store)
    assert run.info.status == "FINISHED"
    assert not _gpu_metrics(run), "other jobs' GPUs are not this run's to report"
    assert "hardware.gpu" not in run.data.tags, "nor their model"
    assert "system/cpu_utilization_percentage" in run.data.metrics


def test_precision_auto_on_a_gpu_trains_in_bfloat16_from_ampere_on(compose_cfg, store: Path) -> None:
    """bfloat16 tensor cores came with compute capability 8.0 (Ampere); before it, fp16 autocast."""
    train(compose_cfg("trainer=gpu", "precision=auto", "trainer.max_epochs=1"))
    run = _only_run(store)
    major, _ = torch.cuda.get_device_capability(0)
    expected = "bf16-mixed" if major >= 8 else "16-mixed"
    assert run.data.tags["trainer.precision_effective"] == expected, run.data.tags
    assert run.info.status == "FINISHED"


def test_an_allocation_the_gpu_has_no_room_for_is_named_with_torchs_words_and_the_shared_gpu_fix() -> None:
    from explab.memory import OutOfMemory, memory_named

    with pytest.raises(OutOfMemory) as named, memory_named():
        torch.empty(10**13, device="cuda")  # 37,253 GiB of float32
    said = str(named.value)
    assert said.startswith("out of memory: CUDA out of memory. Tried to allocate "), said
    assert "data.batch_size" in said and "nvidia-smi" in said and "CUDA_VISIBLE_DEVICES" in said, said
    assert isinstance(named.value.__cause__, torch.OutOfMemoryError)


def test_matmul_precision_high_multiplies_in_tensorfloat32_on_the_gpu_and_answers_lightnings_note(
    compose_cfg, store: Path, caplog
) -> None:
    """Lightning's note on a GPU with tensor cores (Ampere on) asks for torch.set_float32_matmul_precision:
    ``matmul_precision=high`` is that, and the note is not given."""
    import logging

    if torch.cuda.get_device_capability(0)[0] < 8:
        pytest.skip("tensor cores for float32 came with Ampere")
    with caplog.at_level(logging.INFO):
        train(compose_cfg("trainer=gpu", "matmul_precision=high", "trainer.max_epochs=1"))
    assert "that has Tensor Cores" not in caplog.text, caplog.text
    assert torch.backends.cuda.matmul.fp32_precision in ("ieee", "none"), "the process is left as it was"
    run = _only_run(store)
    assert (run.info.status, run.data.params["matmul_precision"]) == ("FINISHED", "high")
