"""hub.training: the pieces the families' training loops share."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from hub.datasets import Dataset
from hub.errors import InvalidArgument
from hub.model import TrainOptions, TrainProgress
from hub.training import (
    LossLog,
    ModuleWeights,
    check_dataset,
    check_gan_options,
    check_options,
    d_loss_nonsaturating,
    discriminator_step,
    ema_decay_at,
    ema_update,
    g_loss_nonsaturating,
    index_batches,
    load_modules_state_dict,
    lr_at,
    min_snr_weight,
    modules_state_dict,
    optimizer_step,
    r1_penalty,
)


def test_index_batches_see_every_item_once_per_epoch_and_follow_the_generator() -> None:
    batches = index_batches(10, 4, torch.Generator().manual_seed(0))
    first = torch.cat([next(batches) for _ in range(5)])  # 20 indices: two whole epochs
    assert sorted(first[:10].tolist()) == list(range(10)) and sorted(first[10:].tolist()) == list(range(10))
    again = index_batches(10, 4, torch.Generator().manual_seed(0))
    assert torch.equal(torch.cat([next(again) for _ in range(5)]), first)


def test_ema_warms_up_then_follows_its_decay_and_copies_buffers() -> None:
    assert ema_decay_at(0, 0.999) == pytest.approx(0.1) and ema_decay_at(100_000, 0.999) == 0.999
    live, ema = nn.BatchNorm1d(2), nn.BatchNorm1d(2)
    with torch.no_grad():
        live.weight.fill_(3.0)
        live.running_mean.fill_(5.0)
    ema_update(ema, live, 0.75)
    torch.testing.assert_close(ema.weight, torch.full((2,), 0.75 * 1.0 + 0.25 * 3.0))
    torch.testing.assert_close(ema.running_mean, torch.full((2,), 5.0))


def test_ema_power_sets_how_much_of_the_run_is_averaged() -> None:
    assert ema_decay_at(5, 0.999, power=8.0) == ema_decay_at(5, 0.999) == 6 / 15
    # power 0: every step weighs the same; live weights 1, 2, ..., n average to (n + 1) / 2 (the initial 0 counts twice)
    live, ema = nn.Linear(1, 1, bias=False), nn.Linear(1, 1, bias=False)
    n = 50
    with torch.no_grad():
        ema.weight.zero_()
        for step in range(1, n + 1):
            live.weight.fill_(float(step))
            ema_update(ema, live, ema_decay_at(step, 0.9999, power=0.0))
    assert ema.weight.detach().item() == pytest.approx(n * (n + 1) / 2 / (n + 2))
    assert ema_decay_at(10**6, 0.999, power=0.0) == 0.999  # the cap still holds


def test_lr_warms_up_linearly_then_decays_to_zero_at_the_last_step() -> None:
    assert [lr_at(s, 10, 1.0) for s in (1, 5, 10)] == [1.0, 1.0, 1.0]  # the default: constant, as before
    assert [lr_at(s, 10, 2.0, warmup=4) for s in (1, 2, 4, 5, 10)] == [0.5, 1.0, 2.0, 2.0, 2.0]
    assert lr_at(4, 10, 2.0, warmup=4, decay="cosine") == 2.0 and lr_at(10, 10, 2.0, warmup=4, decay="cosine") == 0.0
    assert lr_at(7, 10, 2.0, warmup=4, decay="cosine") == pytest.approx(1.0)  # halfway through the decay
    assert lr_at(7, 10, 2.0, warmup=4, decay="linear") == pytest.approx(1.0)
    assert lr_at(6, 10, 2.0, warmup=4, decay="cosine") > lr_at(6, 10, 2.0, warmup=4, decay="linear")
    with pytest.raises(InvalidArgument) as err:
        lr_at(1, 10, 1.0, decay="step")
    assert err.value.field == "lr_decay"


def test_min_snr_weights_cap_the_low_noise_steps_for_each_target() -> None:
    abar = torch.tensor([0.99, 0.5, 0.01], dtype=torch.float64)  # SNR 99, 1, 1/99
    t = torch.tensor([0, 1, 2])
    eps = min_snr_weight(abar, t, 5.0, "epsilon")
    assert torch.allclose(eps, torch.tensor([5 / 99, 1.0, 1.0]))  # only SNR above gamma is down-weighted
    assert torch.allclose(min_snr_weight(abar, t, 5.0, "v_prediction"), torch.tensor([5 / 100, 1 / 2, (1 / 99) / (1 / 99 + 1)]))
    assert torch.allclose(min_snr_weight(abar, t, 5.0, "sample"), torch.tensor([5.0, 1.0, 1 / 99]))


def test_loss_log_reports_interval_means_and_stops_on_a_non_finite_loss() -> None:
    seen: list[TrainProgress] = []
    log = LossLog(40, ("d", "g"), seen.append, " or raise r1_gamma")
    assert log.every == 2
    for step in range(1, 5):
        log.add(step, 1e-3, d=float(step), g=1.0)
    assert log.curves == {"d": [1.5, 3.5], "g": [1.0, 1.0]} and log.losses == [2.5, 4.5]
    assert [(p.step, p.loss) for p in seen] == [(2, 2.5), (4, 4.5)]
    with pytest.raises(InvalidArgument, match=r"learning_rate: loss became \{'d': nan\} at step 5.*was 0.001\) or raise r1_gamma"):
        log.add(5, 1e-3, d=math.nan, g=1.0)


def test_prefixed_state_dicts_round_trip_and_name_what_does_not_fit() -> None:
    a, b = nn.Linear(2, 3), nn.Linear(3, 1)
    tensors = modules_state_dict({"G": a, "D": b}, {"train_steps": torch.tensor([7])})
    assert sorted(tensors) == ["D.bias", "D.weight", "G.bias", "G.weight", "train_steps"]
    fresh = nn.Linear(2, 3)
    load_modules_state_dict({"G": fresh}, tensors)
    torch.testing.assert_close(fresh.weight, a.weight)
    with pytest.raises(InvalidArgument, match=r"G weights do not fit this config: missing \['bias'\]"):
        load_modules_state_dict({"G": nn.Linear(2, 3)}, {"G.weight": a.weight})
    with pytest.raises(InvalidArgument, match=r"D weights do not fit this config: (?s:.)*size mismatch"):
        load_modules_state_dict({"D": nn.Linear(3, 2)}, tensors)


class TwoNets(ModuleWeights):
    def __init__(self) -> None:
        self.G, self.D, self.train_steps, self.device = nn.Linear(2, 2), nn.Linear(2, 1), 0, torch.device("cpu")

    def _modules(self) -> dict[str, nn.Module]:
        return {"G": self.G, "D": self.D}


def test_module_weights_save_the_modules_and_the_step_count() -> None:
    model = TwoNets()
    model.train_steps = 12
    saved = model.state_dict()
    assert sorted(saved) == ["D.bias", "D.weight", "G.bias", "G.weight", "train_steps"]
    other = TwoNets()
    other.load_state_dict(saved)
    assert other.train_steps == 12 and torch.equal(other.G.weight, model.G.weight)
    assert other.parameter_count("G") == 6


def test_gan_losses_and_the_discriminator_step() -> None:
    real, fake = torch.tensor([2.0, 0.0]), torch.tensor([-1.0, 0.5])
    expected = -torch.log(torch.sigmoid(real)).mean() - torch.log(1 - torch.sigmoid(fake)).mean()
    torch.testing.assert_close(d_loss_nonsaturating(real, fake), expected)
    torch.testing.assert_close(g_loss_nonsaturating(fake), -torch.log(torch.sigmoid(fake)).mean())
    x = torch.tensor([[1.0, 2.0]], requires_grad=True)
    D = nn.Linear(2, 1)
    r1 = r1_penalty(D(x), x)  # the gradient of a linear D is its weight row
    torch.testing.assert_close(r1, D.weight.pow(2).sum())
    opt = torch.optim.SGD(D.parameters(), lr=0.1)
    before = D.weight.detach().clone()
    loss, r1_value = discriminator_step(opt, D(x), D(torch.zeros(1, 2)), x, r1_weight=0.5)
    assert r1_value == pytest.approx(float(before.pow(2).sum())) and loss.ndim == 0
    assert not torch.equal(D.weight, before)
    assert discriminator_step(opt, D(x.detach()), D(torch.zeros(1, 2)))[1] is None


def test_optimizer_step_clips_the_gradient_norm() -> None:
    w = nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([w], lr=1.0)
    optimizer_step(opt, (w * torch.tensor([300.0, 400.0])).sum(), [w], grad_clip=1.0)
    torch.testing.assert_close(w.detach(), torch.tensor([-0.6, -0.8]))


def test_option_and_dataset_checks_name_the_field() -> None:
    with pytest.raises(InvalidArgument, match="steps: must be >= 1"):
        check_options(TrainOptions(steps=0))
    with pytest.raises(InvalidArgument, match=r"batch_size: must be >= 2 \(a GAN compares samples within a batch\), got 1"):
        check_gan_options(TrainOptions(steps=1, batch_size=1))
    with pytest.raises(InvalidArgument, match="learning_rate: must be > 0"):
        check_options(TrainOptions(steps=1, learning_rate=0.0))
    points = Dataset("pts", "train", torch.zeros(1, 2))
    with pytest.raises(InvalidArgument, match=r"shape \[2\] but this model was built for \[1, 8, 8\].*'ddpm' family's default_config"):
        check_dataset(points, (1, 8, 8), "ddpm")
    with pytest.raises(InvalidArgument, match="has 1 items; 'gan' needs at least 2"):
        check_dataset(points, (2,), "gan", min_items=2)
