"""LR schedule wiring of the tasks."""

from types import SimpleNamespace

import pytest
import torch

from mmembed.tasks.optim import configure_optimizers, extend_schedules_to_run_length


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
