"""The "distill" family: a one- to four-step student distilled adversarially from a registered diffusion teacher.

Before training, the teacher (a registry reference in the config, loaded through the hub) samples ``num_pairs``
images with its DDIM sampler from seeded noise x_T. The student maps the same x_T to x_0 in ``num_steps`` steps
(predict x_0, take a deterministic DDIM step on its own short schedule, repeat) and is trained with a
regression loss to the teacher's outputs plus a non-saturating adversarial loss against real data (with R1),
in the spirit of adversarial diffusion distillation (Sauer et al. 2023) with the teacher's ODE outputs as
regression targets (Luhman & Luhman 2021).

The teacher must draw x_T as the first draw of each sample's ``NoiseSource`` (genhub-ddpm does), so that
``NoiseSource(seeds).randn(*shape)`` here is exactly the noise the teacher started from.

A class-conditional teacher (``teacher_classes``) is asked for a class that is a function of x_T, every class equally
likely, and the student is told that class: the student stays a sampler of the whole distribution, and its targets
come from the teacher's conditional model instead of its weaker null class.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from hub.errors import InvalidArgument
from hub.model import (BuildContext, Capabilities, GenerativeModel, ModelConfig, ModelFamily, NoiseSource, SampleCost,
                       SampleRequest,
                       StepCallback, StepEvent, TrainOptions, TrainProgress, TrainResult, per_sample_seeds, report_step)
from hub.training import (GAN_HINT, LossLog, ModuleWeights, check_dataset, check_gan_options, discriminator_step, ema_decay_at,
                          ema_update, g_loss_nonsaturating, index_batches, optimizer_step)
from hub.stepping import SteppedModel, run_pass

from genhub_ddgan.networks import build_networks
from genhub_ddgan.process import FewStepProcess
from genhub_ddgan.stepping import FewStepTrajectory, concat_z

if TYPE_CHECKING:
    from hub.datasets import Dataset

INIT_SEED = 0
MAX_STUDENT_STEPS = 4
PAIR_CHUNK = 256  # teacher samples per sampling call while making pairs


@dataclass
class DistillConfig(ModelConfig):
    """Teacher, student network and loss weights (steps, batch, lr, seed: TrainOptions)."""

    sample_shape: tuple[int, ...] = (1, 8, 8)  # [C, H, W] images or [D] points; must match the teacher's
    teacher: str = "ddpm-digits"  # registry reference of the teacher; `--parent` pins it (name:version) and records lineage
    teacher_sampler: str = "ddim"
    teacher_steps: int = 25
    num_pairs: int = 1024  # (x_T, teacher sample) pairs made before training
    pair_seed: int = 1  # request seed of the pairs' noise (seed i of the pairs is per_sample_seeds(pair_seed, n)[i])
    num_steps: int = 2  # student steps, 1..4
    beta_min: float = 0.1  # the student's own VP schedule (only its shape matters: x_T is the teacher's noise)
    beta_max: float = 20.0
    time_power: float = 1.0  # step k at time (k / T)^power of the VP process; > 1: more steps at low noise
    emb_dim: int = 64
    base_channels: int = 32  # images: UNet / discriminator width of the first level
    channel_mults: tuple[int, ...] = (1, 2)
    width: int = 128  # points: MLP width
    num_layers: int = 3  # points: residual blocks in the student, hidden layers in D
    fourier_octaves: int = 0  # points: student and D also see sin/cos of the coordinates (hub.layers); 0: raw
    data_scale: float = 1.0  # the student works on data / data_scale
    regression_weight: float = 1.0  # weight of the mean squared error to the teacher's outputs
    # weight of the per-step loss: each student step, fed the teacher's DDIM state at its noise level, must land on
    # the teacher's state at the next level (progressive distillation's target, from the teacher in one round)
    trajectory_weight: float = 0.0
    # > 0: the teacher is class-conditional with this many classes. Each x_T gets a class c(x_T) (``noise_classes``:
    # every class equally likely), the pairs ask the teacher for that class, and the student sees c as a one-hot z.
    # A teacher's null class learns from only its class-dropout share of the data; its samples are worse and uneven.
    teacher_classes: int = 0
    class_seed: int = 0  # fixes which pixels of x_T vote for which class
    adversarial_weight: float = 0.1  # weight of the non-saturating generator loss
    r1_gamma: float = 0.05
    r1_interval: int = 4
    ema_decay: float = 0.999
    adam_beta1: float = 0.0
    adam_beta2: float = 0.99
    d_lr_ratio: float = 1.0

    def __post_init__(self) -> None:
        self.sample_shape = tuple(self.sample_shape)
        self.channel_mults = tuple(self.channel_mults)
        if len(self.sample_shape) == 3:
            _, h, w = self.sample_shape
            down = 2 ** (len(self.channel_mults) - 1)
            if not self.channel_mults or min(self.channel_mults) < 1 or h % down or w % down or h // down < 2:
                raise InvalidArgument("channel_mults", f"{list(self.channel_mults)} does not fit {h}x{w} images; "
                                      "use fewer levels (each halves H and W)")
        elif len(self.sample_shape) != 1 or self.sample_shape[0] < 1:
            raise InvalidArgument("sample_shape", f"need [C, H, W] images or [D] points, got {list(self.sample_shape)}")
        if not self.teacher:
            raise InvalidArgument("teacher", "name the teacher model, e.g. genhub train distill --parent ddpm-digits:1")
        if not 1 <= self.num_steps <= MAX_STUDENT_STEPS:
            raise InvalidArgument("num_steps", f"a distilled student takes 1 to {MAX_STUDENT_STEPS} steps, got {self.num_steps}")
        self.check_at_least_one("teacher_steps", "num_pairs", "emb_dim", "base_channels", "width", "num_layers", "r1_interval")
        if self.pair_seed < 0 or self.class_seed < 0:
            raise InvalidArgument("pair_seed", f"pair_seed and class_seed must be >= 0, got {self.pair_seed}, {self.class_seed}")
        if not 0 <= self.teacher_classes <= math.prod(self.sample_shape) or self.teacher_classes == 1:
            raise InvalidArgument("teacher_classes", f"need 0 (unconditional teacher) or 2..{math.prod(self.sample_shape)} "
                                  f"(one per x_T value at most), got {self.teacher_classes}")
        if min(self.regression_weight, self.adversarial_weight, self.trajectory_weight, self.r1_gamma) < 0 or not self.data_scale > 0:
            raise InvalidArgument("regression_weight", "loss weights and r1_gamma must be >= 0 and data_scale > 0")
        self.check_fractions("ema_decay", "adam_beta1", "adam_beta2")
        FewStepProcess.vp(self.num_steps, self.beta_min, self.beta_max, self.time_power)



class DistillModel(ModuleWeights, SteppedModel, GenerativeModel):
    """The student (sampled through its EMA) and the discriminator that keeps it on the data manifold."""

    def __init__(self, config: DistillConfig, context: BuildContext) -> None:
        self.config = config
        self.context = context  # the teacher is loaded in train(), not here: sampling never needs it
        self.process = FewStepProcess.vp(config.num_steps, config.beta_min, config.beta_max, config.time_power)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(INIT_SEED)
            self.G, self.D = build_networks(
                config.sample_shape, z_dim=config.teacher_classes, base_channels=config.base_channels, channel_mults=config.channel_mults,
                width=config.width, num_layers=config.num_layers, emb_dim=config.emb_dim, conditional_d=False,
                fourier_octaves=config.fourier_octaves,
            )
        self.G_ema = copy.deepcopy(self.G).requires_grad_(False).eval()
        self.train_steps = 0
        self.device = torch.device("cpu")

    # ---- the student's chain --------------------------------------------------------------------

    def noise_classes(self, x_T: torch.Tensor) -> torch.Tensor:
        """The class [N] of each x_T [N, ...] (``teacher_classes`` > 0): the class whose disjoint set of pixels (a fixed
        random partition, equal sizes) sums highest. The sums of Gaussian noise over equal disjoint sets are i.i.d., so
        every class is equally likely, and the class is a function of the seed alone."""
        k, dim = self.config.teacher_classes, math.prod(self.config.sample_shape)
        order = torch.randperm(dim, generator=torch.Generator().manual_seed(self.config.class_seed))
        groups = order[: dim // k * k].view(k, dim // k).to(x_T.device)  # [K, D // K] pixel indices
        return x_T.flatten(1)[:, groups].sum(dim=2).argmax(dim=1)

    def student_z(self, x_T: torch.Tensor) -> torch.Tensor | None:
        """The student's z for x_T [N, ...]: one-hot c(x_T) [N, K], or None for a student of an unconditional teacher."""
        k = self.config.teacher_classes
        return F.one_hot(self.noise_classes(x_T), k).to(x_T.dtype) if k else None

    def run_student(self, net: nn.Module, x_T: torch.Tensor, callback: StepCallback | None = None,
                    preview_every: int = 0) -> torch.Tensor:
        """x_T [N, ...] -> x_0 (the model's working scale) in num_steps steps; differentiable when grad is on."""
        x, x0 = x_T, x_T
        z = self.student_z(x_T)
        steps = self.config.num_steps
        for i, step in enumerate(range(steps, 0, -1)):
            t = torch.full((x.shape[0],), step, dtype=torch.long, device=x.device)
            x0 = net(x, t, z)
            if step > 1:
                x = self.process.ddim_step(x0, x, t)
            preview = self._output(x0) if preview_every and (i + 1) % preview_every == 0 else None
            report_step(callback, StepEvent(i + 1, steps, preview))  # a no-op without a callback (training)
        return x0

    def _output(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.config.data_scale
        return x.clamp(-1.0, 1.0) if self.output_kind == "image" else x

    # ---- training -------------------------------------------------------------------------------

    def teacher_pairs(self, teacher: GenerativeModel) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(x_T, teacher's DDIM sample, states) for num_pairs seeded noises, on the CPU: x_T and samples [M, ...];
        with ``trajectory_weight`` > 0, the teacher's states at the student's noise levels [M, T + 1, ...] (entry k
        at level k: 0 the sample, T the noise), else None."""
        cfg = self.config
        seeds = per_sample_seeds(cfg.pair_seed, cfg.num_pairs)
        noises, targets, states = [], [], []
        for start in range(0, len(seeds), PAIR_CHUNK):
            chunk = seeds[start : start + PAIR_CHUNK]
            x_T = NoiseSource(chunk).randn(*cfg.sample_shape)  # the teacher's x_T (its first draw)
            labels = self.noise_classes(x_T).tolist() if cfg.teacher_classes else None
            request = SampleRequest(seeds=chunk, sampler=cfg.teacher_sampler, steps=cfg.teacher_steps, class_labels=labels)
            if cfg.trajectory_weight > 0:
                path = self._teacher_states(teacher, request)  # [n, T + 1, ...]
                states.append(path)
                y = path[:, 0]
            else:
                y = teacher.sample(request).detach().to("cpu", torch.float32)
            if tuple(y.shape) != (len(chunk), *cfg.sample_shape):
                raise InvalidArgument("teacher", f"{cfg.teacher!r} samples have shape {list(y.shape[1:])}, the student "
                                      f"{list(cfg.sample_shape)}; distil a teacher trained on the same dataset")
            noises.append(x_T)
            targets.append(y)
        return torch.cat(noises), torch.cat(targets), torch.cat(states) if states else None

    def _teacher_states(self, teacher: GenerativeModel, request: SampleRequest) -> torch.Tensor:
        """The teacher's chain at the student's noise levels: [n, T + 1, ...]. Level k of the student sits at time
        s_k of the VP process; the teacher's DDIM steps are evenly spaced in time, so s_k is its state after
        round((1 - s_k) x steps) of them. The noise level need not match exactly: the student learns the moves."""
        if not isinstance(teacher, SteppedModel):
            raise InvalidArgument("trajectory_weight", f"teacher {self.config.teacher!r} does not sample step by step; "
                                  "use trajectory_weight=0 (end-to-end regression only)")
        trajectory = teacher.begin(request)
        states = [trajectory.state.x.detach().clone()] if hasattr(trajectory, "state") else []
        while not trajectory.finished:
            event = run_pass(teacher, [trajectory])[0]
            if isinstance(event, BaseException):
                raise event
            states.append(trajectory.state.x.detach().clone())  # type: ignore[attr-defined]
        if len(states) != trajectory.total + 1:
            raise InvalidArgument("trajectory_weight", f"teacher {self.config.teacher!r} has no diffusion state to "
                                  "follow; use trajectory_weight=0")
        states[-1] = trajectory.result()
        times = self.level_times()
        picks = [round((1.0 - s) * trajectory.total) for s in times]  # level k -> the teacher's state index
        return torch.stack([states[i] for i in picks], dim=1).to("cpu", torch.float32)

    def level_times(self) -> list[float]:
        """Time s in [0, 1] of each of the student's noise levels 0..T (0: data; T: the teacher's noise)."""
        cfg = self.config
        return [0.0] + [(k / cfg.num_steps) ** cfg.time_power for k in range(1, cfg.num_steps + 1)]

    def train(
        self, dataset: Dataset, options: TrainOptions, progress: Callable[[TrainProgress], None] | None = None
    ) -> TrainResult:
        """Make teacher pairs, then regression + adversarial training of the student; seeded by ``options.seed``."""
        cfg = self.config
        check_dataset(dataset, cfg.sample_shape, "distill", min_items=2)
        check_gan_options(options)
        if self.context.load_version is None:
            raise InvalidArgument("teacher", "distillation loads its teacher from the registry; train through the hub "
                                  "(`genhub train distill ...` or Hub.train), which provides BuildContext.load_version")
        started = time.perf_counter()
        x_T, targets, states = self.teacher_pairs(self.context.load_version(cfg.teacher))
        pair_time = time.perf_counter() - started
        self.to(options.device)
        targets = targets / cfg.data_scale
        step_targets = None if states is None else self._step_targets(states / cfg.data_scale)
        data = dataset.data.to(torch.float32) / cfg.data_scale
        betas = (cfg.adam_beta1, cfg.adam_beta2)
        opt_g = torch.optim.Adam(self.G.parameters(), lr=options.learning_rate, betas=betas)
        opt_d = torch.optim.Adam(self.D.parameters(), lr=options.learning_rate * cfg.d_lr_ratio, betas=betas)
        log = LossLog(options.steps, ("d", "g", "regression", "trajectory"), progress, GAN_HINT)
        G, D = self.G.train(), self.D.train()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(options.seed)
            gen = torch.Generator().manual_seed(options.seed)
            pair_batches = index_batches(len(x_T), options.batch_size, gen)
            data_batches = index_batches(len(data), options.batch_size, gen)
            for step in range(1, options.steps + 1):
                idx = next(pair_batches)
                out = self.run_student(G, x_T[idx].to(self.device))  # [B, ...], with grad
                real = data[next(data_batches)].to(self.device)
                # -- discriminator (skipped when the adversarial loss is off)
                d_value = 0.0
                if cfg.adversarial_weight > 0:
                    do_r1 = cfg.r1_gamma > 0 and step % cfg.r1_interval == 0
                    real.requires_grad_(do_r1)
                    D.requires_grad_(True)
                    real_logits = D(real, None, None)
                    d_loss, _ = discriminator_step(opt_d, real_logits, D(out.detach(), None, None), real if do_r1 else None,
                                                   cfg.r1_gamma / 2 * cfg.r1_interval)
                    D.requires_grad_(False)
                    d_value = float(d_loss.detach())
                # -- student
                regression = F.mse_loss(out, targets[idx].to(self.device))
                loss = cfg.regression_weight * regression
                per_step = torch.zeros(())
                if step_targets is not None:
                    per_step = self._trajectory_loss(G, *(part[idx].to(self.device) for part in step_targets),
                                                     self.student_z(x_T[idx].to(self.device)))
                    loss = loss + cfg.trajectory_weight * per_step
                g_value = 0.0
                if cfg.adversarial_weight > 0:
                    g_loss = g_loss_nonsaturating(D(out, None, None))
                    loss = loss + cfg.adversarial_weight * g_loss
                    g_value = float(g_loss.detach())
                optimizer_step(opt_g, loss)
                self.train_steps += 1
                ema_update(self.G_ema, G, ema_decay_at(self.train_steps, cfg.ema_decay))
                log.add(step, options.learning_rate, d=d_value, g=g_value, regression=float(regression.detach()),
                        trajectory=float(per_step.detach()))
        D.requires_grad_(True)
        G.eval()
        D.eval()
        return TrainResult(losses=log.losses, extra={
            "d_losses": log.curves["d"], "g_losses": log.curves["g"], "regression_losses": log.curves["regression"],
            "trajectory_losses": log.curves["trajectory"],
            "teacher": cfg.teacher, "teacher_pairs_s": pair_time, "log_every": log.every, "train_steps": self.train_steps,
        })

    def _step_targets(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher states [M, T + 1, ...] -> (inputs, x_0 targets), each [M, T, ...]: entry k - 1 is step k's input
        (the state at level k) and the x_0 whose DDIM step lands on the state at level k - 1."""
        m, levels = states.shape[0], states.shape[1]
        t = torch.arange(1, levels).repeat(m)  # [M * T]
        x_t = states[:, 1:].reshape(m * (levels - 1), *states.shape[2:])
        x_prev = states[:, :-1].reshape_as(x_t)
        x0 = self.process.ddim_x0_between(x_t, x_prev, t)
        return x_t.reshape(m, levels - 1, *states.shape[2:]), x0.reshape(m, levels - 1, *states.shape[2:])

    def _trajectory_loss(self, net: nn.Module, x_t: torch.Tensor, x0: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        """Mean squared error of every step's x_0 prediction on the teacher's states ([B, T, ...] each; z [B, K])."""
        b, steps = x_t.shape[0], x_t.shape[1]
        t = torch.arange(1, steps + 1, device=x_t.device).repeat(b)  # [B * T]
        pred = net(x_t.flatten(0, 1), t, None if z is None else z.repeat_interleave(steps, dim=0))
        return F.mse_loss(pred, x0.flatten(0, 1))

    # ---- sampling and weights -------------------------------------------------------------------

    @property
    def capabilities(self) -> Capabilities:
        """Unconditional, exactly ``num_steps`` trained steps; naming the family as the sampler is allowed."""
        n = self.config.num_steps
        return Capabilities(sample_shape=self.config.sample_shape, samplers=("distill",),
                            min_steps=n, max_steps=n, default_steps=n)

    def sample(self, request: SampleRequest, callback: StepCallback | None = None) -> torch.Tensor:
        """x_T from each seed exactly as the teacher draws it, then num_steps student steps (one StepEvent each)."""
        return self.sample_alone(request, callback)

    def sample_cost(self, request: SampleRequest) -> SampleCost:
        return SampleCost(self.config.num_steps, request.num_samples, math.prod(self.config.sample_shape))

    def begin(self, request: SampleRequest) -> FewStepTrajectory:
        self.capabilities.check(request)
        steps = self.config.num_steps
        noise = NoiseSource(request.seeds, self.device)
        x_T = noise.randn(*self.config.sample_shape)  # [N, ...]
        return FewStepTrajectory(request, noise, x_T, steps, 0, self._move, self._output, result_is_x0=True,
                                 fixed_z=self.student_z(x_T))

    def _move(self, x0: torch.Tensor, x: torch.Tensor, t: torch.Tensor, noise: NoiseSource) -> torch.Tensor:
        return self.process.ddim_step(x0, x, t) if int(t[0]) > 1 else x  # as run_student does

    def network_pass(self, x: torch.Tensor, t: torch.Tensor, conds: list[Any], rows: list[int]) -> torch.Tensor:
        return self.G_ema(x, t, concat_z(conds))  # [R, ...] x_0 predictions

    def _modules(self) -> dict[str, nn.Module]:
        """``G.*``, ``D.*`` (to resume training), ``G_ema.*`` (sampled from); no teacher weights."""
        return {"G": self.G, "D": self.D, "G_ema": self.G_ema}

    def describe(self) -> dict[str, Any]:
        """The capabilities, with the student's size and its teacher."""
        cfg = self.config
        return {**super().describe(), "family": DistillFamily.name, "parameters": self.parameter_count("G"),
                "teacher": cfg.teacher, "teacher_sampler": f"{cfg.teacher_sampler} x {cfg.teacher_steps}",
                "train_steps": self.train_steps}


class DistillFamily(ModelFamily, name="distill", config_class=DistillConfig, model_class=DistillModel):
    """A 1-4 step student of a registered diffusion teacher: regression to its DDIM outputs + adversarial loss."""

    description: ClassVar[str] = ("Adversarial distillation: a 1-4 step student of a registered diffusion teacher "
                                  "(regression to its DDIM outputs + GAN loss); --parent TEACHER:VERSION")
    # `genhub train distill --parent NAME:VERSION`: the hub pins the parent's exact version into this config key and
    # records it as lineage, instead of loading its weights into the student.
    parent_config_key: ClassVar[str] = "teacher"

    def config_for(self, dataset: Dataset) -> DistillConfig:
        """Fitted to ``dataset``; the teacher defaults to the CLI's default name for a DDPM on it, ``ddpm-<dataset>``."""
        teacher = f"ddpm-{dataset.name}"
        if dataset.kind == "points":
            return DistillConfig(sample_shape=tuple(dataset.sample_shape), teacher=teacher, r1_gamma=0.1)
        _, h, _ = dataset.sample_shape
        # base 16 at 16x16: the width the digits16 recipe (README) was tried with; it keeps a step cheap on a CPU
        return DistillConfig(sample_shape=tuple(dataset.sample_shape), teacher=teacher,
                             channel_mults=(1, 2) if h <= 8 else (1, 2, 2), base_channels=32 if h <= 8 else 16)
