"""``precision=auto`` trains in what the hardware computes natively; bfloat16 asked for where it is emulated
is warned about; ``matmul_precision`` sets the precision of float32 matrix products for the run alone."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from explab.build import build_trainer
from explab.errors import ConfigError
from explab.eval import evaluate
from explab.precision import auto_precision, native_bf16
from explab.train import train
from explab.validation import validate_config
from tests.conftest import runs_in

CPUINFO = Path("/proc/cpuinfo")


def cpu_flags() -> set[str]:
    """The CPU's feature flags as the Linux kernel reports them: an oracle apart from torch's own probes."""
    if not CPUINFO.exists():
        pytest.skip("no /proc/cpuinfo to read the CPU's features from")
    line = next(line for line in CPUINFO.read_text().splitlines() if line.startswith("flags"))
    return set(line.split(":", 1)[1].split())


@pytest.mark.parametrize(
    ("device", "bf16_native", "expected"),
    [
        ("cuda", True, "bf16-mixed"),  # Ampere and later
        ("cuda", False, "16-mixed"),  # Volta, Turing: fp16 tensor cores, no bfloat16
        ("cpu", True, "bf16-mixed"),  # AVX512-BF16 or AMX
        ("cpu", False, "32-true"),  # bfloat16 would be emulated
        ("mps", False, "32-true"),
    ],
)
def test_auto_picks_mixed_precision_only_where_it_is_native(device: str, bf16_native: bool, expected: str) -> None:
    assert auto_precision(device, bf16_native) == expected


def test_native_bfloat16_on_this_cpu_is_what_the_kernel_reports() -> None:
    assert native_bf16("cpu") == bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def test_a_cpu_trainer_with_precision_auto_trains_in_what_this_cpu_runs_natively(compose_cfg) -> None:
    trainer = build_trainer(compose_cfg("trainer=cpu", "precision=auto"), callbacks=[], loggers=[])
    native = bool({"avx512_bf16", "amx_bf16"} & cpu_flags())
    assert trainer.precision == ("bf16-mixed" if native else "32-true")


def test_bfloat16_asked_for_on_a_cpu_that_would_emulate_it_is_warned_about(compose_cfg, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="explab.precision"):
        trainer = build_trainer(compose_cfg("trainer=cpu", "precision=bf16-mixed"), callbacks=[], loggers=[])
    assert trainer.precision == "bf16-mixed", "what was asked for is what runs"
    warned = "bfloat16 is emulated here" in caplog.text and "precision=auto" in caplog.text
    assert warned == (not {"avx512_bf16", "amx_bf16"} & cpu_flags()), caplog.text


def test_only_float16_autocast_is_said_to_need_a_gpu(compose_cfg, caplog) -> None:
    """``bf16``, Lightning's old name for bf16-mixed, was said to run as bf16-mixed "(fp16 autocast needs a GPU)"."""
    with caplog.at_level(logging.WARNING, logger="explab.build"):
        build_trainer(compose_cfg("trainer=cpu", "trainer.precision=bf16"), callbacks=[], loggers=[])
        assert "fp16 autocast" not in caplog.text
        build_trainer(compose_cfg("trainer=cpu", "trainer.precision=16"), callbacks=[], loggers=[])
    assert "trainer.precision=16 runs as bf16-mixed on this CPUAccelerator (fp16 autocast needs a GPU)" in caplog.text


def test_float16_weights_asked_for_on_a_cpu_are_said_to_be_float16(compose_cfg, caplog) -> None:
    """``16-true`` is float16 itself, not bfloat16: the warning named the other format."""
    with caplog.at_level(logging.WARNING, logger="explab.precision"):
        build_trainer(
            compose_cfg("trainer=cpu", "trainer.precision=16-true", "optimizer=sgd"), callbacks=[], loggers=[]
        )
    assert "bfloat16" not in caplog.text
    assert ("float16 is emulated here" in caplog.text) == ("amx_fp16" not in cpu_flags()), caplog.text


@pytest.mark.parametrize(
    ("overrides", "refused"),
    [
        (("optimizer=adam",), "+optimizer.eps=1e-4"),
        (("optimizer=rmsprop",), "+optimizer.eps=1e-4"),
        (("optimizer=adam", "+optimizer.eps=1e-4"), None),
        (("optimizer=sgd",), None),  # no eps
    ],
)
def test_an_eps_float16_rounds_to_zero_is_refused_for_float16_weights(compose_cfg, overrides, refused) -> None:
    """With the weights in float16 Adam's eps of 1e-8 is 0, and the loss became NaN within an epoch: a run
    blamed on its learning rate. bfloat16 holds 1e-8, and mixed precision keeps float32 weights."""
    from explab.errors import UsageError

    cfg = compose_cfg("trainer.precision=16-true", *overrides)
    if refused is None:
        validate_config(cfg)
        return
    with pytest.raises(UsageError, match=rf"16-true keeps the weights .* eps=1e-08 is 0: .* give \{refused}"):
        validate_config(cfg)
    for other in ("bf16-true", "16-mixed", "bf16-mixed"):
        validate_config(compose_cfg(f"trainer.precision={other}", *overrides))


def test_a_run_multiplies_in_its_matmul_precision_records_it_and_leaves_the_process_as_it_was(
    compose_cfg, store: Path, tmp_path: Path, caplog
) -> None:
    """The next job of a sweep worker's process is not computed in this one's precision; explab-eval tests in
    the run's own (on a CPU with AVX512-BF16 or AMX, ``medium`` multiplies in bfloat16 and moves the loss)."""
    probe = tmp_path / "matmul.txt"
    trained = train(
        compose_cfg(
            "matmul_precision=medium", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
            "+callbacks.matmul_probe._target_=tests.support.callbacks.RecordTorchSettings",
            f"+callbacks.matmul_probe.path={probe}",
        )
    )  # fmt: skip
    assert [line.split()[:2] for line in probe.read_text().splitlines()] == [["fit", "medium"], ["test", "medium"]]
    assert torch.get_float32_matmul_precision() == "highest", "the process is left as it was"
    [run] = runs_in(store, "digits_cnn")
    assert run.data.params["matmul_precision"] == "medium"
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="explab.precision"):
        evaluated = evaluate(compose_cfg(f"run_id={run.info.run_id}", "trainer=cpu", config_name="eval"))
    assert "float32 matrix products at matmul_precision=medium" in caplog.text, "the run's test is tested again"
    assert evaluated["test/loss"] == pytest.approx(trained["test/loss"], rel=1e-6)
    assert torch.get_float32_matmul_precision() == "highest"


def test_a_matmul_precision_torch_does_not_have_is_refused_with_the_ones_it_has(compose_cfg) -> None:
    with pytest.raises(ConfigError, match=r"^matmul_precision='tf32' is not valid: .*one of highest, high, medium"):
        validate_config(compose_cfg("matmul_precision=tf32"))
