"""LR schedule wiring of the tasks."""

import functools
import math
from types import SimpleNamespace

import pytest
import torch

from mmembed.tasks.optim import (
    OneCycleLR,
    configure_optimizers,
    extend_schedules_to_run_length,
)


def test_one_cycle_gets_the_run_length_from_the_trainer():
    module = torch.nn.Linear(2, 2)
    built = configure_optimizers(
        module,
        lambda params: torch.optim.AdamW(params, lr=1e-3),
        lambda opt, total_steps: torch.optim.lr_scheduler.OneCycleLR(opt, 1e-3, total_steps),
        total_steps=37,
    )
    assert built["lr_scheduler"]["scheduler"].total_steps == 37
    assert built["lr_scheduler"]["interval"] == "step"


def test_a_resumed_longer_run_stretches_one_cycle_instead_of_crashing():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1.0, total_steps=10)
    for _ in range(5):
        optimizer.step()
        scheduler.step()
    trainer = SimpleNamespace(
        estimated_stepping_batches=20, lr_scheduler_configs=[SimpleNamespace(scheduler=scheduler)]
    )
    with pytest.warns(UserWarning, match="extending total_steps from 10 to 20"):
        extend_schedules_to_run_length(trainer)
    rates = []
    for _ in range(14):  # to step 19, the last step of the stretched cycle
        optimizer.step()
        scheduler.step()
        rates.append(optimizer.param_groups[0]["lr"])
    assert rates == sorted(rates, reverse=True), "annealing must continue monotonically"
    assert rates[-1] == pytest.approx(0.0, abs=1e-3)


@pytest.mark.parametrize(
    ("total_steps", "pct_start", "three_phase"),
    [(10, 0.1, False), (10, 0.1, True), (2, 0.5, False), (7, 1.0, False), (1, 1.0, False),
     (1, 0.1, False), (40, 0.025, False), (37, 0.3, False)],
)  # fmt: skip
def test_one_cycle_runs_any_number_of_steps(total_steps, pct_start, three_phase):
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    scheduler = OneCycleLR(optimizer, max_lr=1.0, total_steps=total_steps, pct_start=pct_start,
                           three_phase=three_phase)  # fmt: skip
    rates = [optimizer.param_groups[0]["lr"]]
    for _ in range(total_steps):  # what Lightning does: one scheduler step per optimizer step
        optimizer.step()
        scheduler.step()
        rates.append(optimizer.param_groups[0]["lr"])
    assert all(math.isfinite(rate) and 0.0 <= rate <= 1.0 + 1e-9 for rate in rates)
    assert max(rates) > 0.95  # the cycle still (about) reaches its peak


def test_torch_one_cycle_of_ten_steps_fails_naming_the_settings():
    with pytest.raises(ZeroDivisionError):  # the defect, in torch itself
        torch.optim.lr_scheduler.OneCycleLR(
            torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0), 1.0, 10, pct_start=0.1
        )
    partial = functools.partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=0.003, pct_start=0.1)
    message = r"OneCycleLR\(max_lr=0.003, pct_start=0.1\) for a run of 10 optimizer steps"
    with pytest.raises(ValueError, match=message):
        configure_optimizers(torch.nn.Linear(2, 2), torch.optim.AdamW, partial, total_steps=10)
    ours = functools.partial(OneCycleLR, max_lr=0.003, pct_start=0.1)
    built = configure_optimizers(torch.nn.Linear(2, 2), torch.optim.AdamW, ours, total_steps=10)
    assert built["lr_scheduler"]["scheduler"].total_steps == 10


def test_stretching_a_schedule_onto_a_one_step_warm_up_keeps_it_running():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, 1.0, total_steps=5)
    trainer = SimpleNamespace(
        estimated_stepping_batches=10, lr_scheduler_configs=[SimpleNamespace(scheduler=scheduler)]
    )
    with pytest.warns(UserWarning, match="extending total_steps from 5 to 10"):
        extend_schedules_to_run_length(trainer)  # 0.3 x 10 ... and 0.1 x 10 = 1 step
    for _ in range(10):
        optimizer.step()
        scheduler.step()
    assert math.isfinite(optimizer.param_groups[0]["lr"])
