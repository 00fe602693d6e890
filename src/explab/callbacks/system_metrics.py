"""CPU, memory, disk, network and (with the ``gpu`` extra) GPU use of a job, as ``system/...`` metrics.

MLflow's own sampler (``mlflow.system_metrics``) does the measuring; this callback decides where it runs and
what it sees: one sampler per node (local rank 0, named ``node_<rank>`` when there are several nodes), on
the GPUs this job's processes use on that node only, from the start of the fit to its end.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

import lightning as L
import torch

from explab.utils.logging import get_logger

if TYPE_CHECKING:
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

log = get_logger(__name__)

GPU_MONITORS = ("GPUMonitor", "ROCMMonitor")  # MLflow's samplers of NVIDIA and AMD GPUs


class SystemMetrics(L.Callback):
    """Samples the machine every ``interval_seconds`` while the fit runs and logs it on the job's run.

    Args:
        tracking_uri: where the run lives.
        run_id: the run, known on global rank 0; the other ranks learn it from rank 0 when the fit starts.
        interval_seconds: how often to sample. Each sample is a few system calls and one metric write in a
            background thread, so 10 s costs nothing a fit can measure.
        resumed: continue the run's ``system/`` steps instead of starting them at 0.
    """

    def __init__(self, tracking_uri: str, run_id: str | None, interval_seconds: float, resumed: bool = False):
        self.tracking_uri = tracking_uri
        self.run_id = run_id
        self.interval_seconds = interval_seconds
        self.resumed = resumed
        self._monitor: SystemMetricsMonitor | None = None
        self._writing: threading.Thread | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        run_id = trainer.strategy.broadcast(self.run_id, src=0)
        if trainer.local_rank != 0 or run_id is None:
            return
        node = f"node_{trainer.node_rank}" if trainer.num_nodes > 1 else None
        self._monitor = start_sampler(
            run_id, self.tracking_uri, self.interval_seconds, node, _cuda_devices(trainer), self.resumed
        )

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Stop sampling as the fit ends; the last samples are written in the background, so the fit's own
        time (``perf/fit_seconds``) does not pay for the store write: ``wait_until_written`` collects it."""
        if self._monitor is not None:
            self._writing = threading.Thread(target=stop_sampler, args=(self._monitor,), name="SystemMetricsStop")
            self._writing.start()
            self._monitor = None

    def wait_until_written(self) -> None:
        """Return once the last samples are in the store (the job calls it before its run ends)."""
        if self._writing is not None:
            self._writing.join()
            self._writing = None


def _cuda_devices(trainer: L.Trainer) -> list[int]:
    """The local CUDA indices this node's processes of the job use (all of them, not only this rank's)."""
    devices = getattr(trainer.strategy, "parallel_devices", None) or [trainer.strategy.root_device]
    return [d.index or 0 for d in devices if isinstance(d, torch.device) and d.type == "cuda"]


def start_sampler(
    run_id: str,
    tracking_uri: str,
    interval_seconds: float,
    node: str | None,
    cuda_devices: list[int],
    resumed: bool,
) -> SystemMetricsMonitor:
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    # MLflow narrates the sampler at INFO in every run ("Started monitoring", "Skip logging GPU metrics" on a
    # machine without GPUs); the one line that matters, GPUs in use but unseen, explab says itself below
    logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)
    monitor = SystemMetricsMonitor(
        run_id,
        sampling_interval=interval_seconds,
        resume_logging=resumed,
        node_id=node,
        tracking_uri=tracking_uri,
    )
    if cuda_devices and not any(type(m).__name__ in GPU_MONITORS for m in monitor.monitors):
        log.warning(
            "this job trains on GPUs but records no system/gpu_* metrics: MLflow found no NVML (or ROCm SMI); "
            "install explab's gpu extra (nvidia-ml-py)"
        )
    for gpu in [m for m in monitor.monitors if hasattr(m, "gpu_handles")]:
        _keep_own_gpus(gpu, cuda_devices)
        if not gpu.gpu_handles:  # a CPU job on a GPU machine: other jobs' GPUs are not its to report
            monitor.monitors.remove(gpu)
    monitor.start()
    return monitor


def stop_sampler(monitor: SystemMetricsMonitor) -> None:
    """Stop the sampler and log what it gathered since its last write.

    MLflow's ``finish`` drops samples taken since the last write, so a fit shorter than one interval would
    record nothing; the first sample is taken at start, so every run records at least one.
    """
    thread = monitor._process
    if thread is None:
        return
    monitor._shutdown_event.set()
    thread.join()
    monitor._process = None
    try:
        leftover = monitor.aggregate_metrics()
        if leftover:
            monitor.publish_metrics(leftover)
        monitor.mlflow_logger.flush()
    except Exception as err:  # the run's own record matters more than its last system sample
        log.warning("system metrics not written: %s", err)


def _keep_own_gpus(gpu_monitor: Any, cuda_devices: list[int]) -> None:
    """Restrict MLflow's NVML monitor, which sees every GPU of the machine, to this job's.

    CUDA numbers the GPUs a process may see (``CUDA_VISIBLE_DEVICES``) in its own order, NVML numbers all of
    them by PCI bus: the two are matched by UUID, which both report.
    """
    import pynvml

    handles = []
    for index in cuda_devices:
        uuid = str(torch.cuda.get_device_properties(index).uuid)
        try:
            handles.append(pynvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith("GPU-") else f"GPU-{uuid}"))
        except pynvml.NVMLError as err:
            log.warning("GPU %s (cuda:%d) not found by NVML (%s): its use is not recorded", uuid, index, err)
    gpu_monitor.gpu_handles = handles
    gpu_monitor.num_gpus = len(handles)
