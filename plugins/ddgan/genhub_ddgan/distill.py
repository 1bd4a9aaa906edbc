"""The "distill" family: a one- to four-step student distilled adversarially from a registered diffusion teacher.

Before training, the teacher (a registry reference in the config, loaded through the hub) samples ``num_pairs``
images with its DDIM sampler from seeded noise x_T. The student maps the same x_T to x_0 in ``num_steps`` steps
(predict x_0, take a deterministic DDIM step on its own short schedule, repeat) and is trained with a
regression loss to the teacher's outputs plus a non-saturating adversarial loss against real data (with R1),
in the spirit of adversarial diffusion distillation (Sauer et al. 2023) with the teacher's ODE outputs as
regression targets (Luhman & Luhman 2021).

The teacher must draw x_T as the first draw of each sample's ``NoiseSource`` (genhub-ddpm does), so that
``NoiseSource(seeds).randn(*shape)`` here is exactly the noise the teacher started from.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from hub.errors import InvalidArgument
from hub.model import (
    BuildContext,
    Capabilities,
    GenerativeModel,
    ModelConfig,
    ModelFamily,
    NoiseSource,
    SampleRequest,
    StepCallback,
    StepEvent,
    TrainOptions,
    TrainProgress,
    TrainResult,
    per_sample_seeds,
    report_step,
)

from genhub_ddgan.common import (
    LossLog,
    check_dataset,
    check_options,
    d_loss_nonsaturating,
    ema_decay_at,
    ema_update,
    g_loss_nonsaturating,
    index_batches,
    load_modules_state_dict,
    modules_state_dict,
    r1_penalty,
)
from genhub_ddgan.networks import build_networks
from genhub_ddgan.process import FewStepProcess

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
    emb_dim: int = 64
    base_channels: int = 32  # images: UNet / discriminator width of the first level
    channel_mults: tuple[int, ...] = (1, 2)
    width: int = 128  # points: MLP width
    num_layers: int = 3  # points: residual blocks in the student, hidden layers in D
    fourier_octaves: int = 0  # points: student and D also see sin/cos of the coordinates (hub.layers); 0: raw
    data_scale: float = 1.0  # the student works on data / data_scale
    regression_weight: float = 1.0  # weight of the mean squared error to the teacher's outputs
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
        for name in ("teacher_steps", "num_pairs", "emb_dim", "base_channels", "width", "num_layers", "r1_interval"):
            if getattr(self, name) < 1:
                raise InvalidArgument(name, f"must be >= 1, got {getattr(self, name)}")
        if self.pair_seed < 0:
            raise InvalidArgument("pair_seed", f"must be >= 0, got {self.pair_seed}")
        if min(self.regression_weight, self.adversarial_weight, self.r1_gamma) < 0 or not self.data_scale > 0:
            raise InvalidArgument("regression_weight", "loss weights and r1_gamma must be >= 0 and data_scale > 0")
        for name in ("ema_decay", "adam_beta1", "adam_beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise InvalidArgument(name, f"must be in [0, 1), got {getattr(self, name)}")
        FewStepProcess.vp(self.num_steps, self.beta_min, self.beta_max)

    @property
    def is_points(self) -> bool:
        return len(self.sample_shape) == 1


class DistillModel(GenerativeModel):
    """The student (sampled through its EMA) and the discriminator that keeps it on the data manifold."""

    output_kind: ClassVar[str] = "image"

    def __init__(self, config: DistillConfig, context: BuildContext) -> None:
        self.config = config
        self.context = context  # the teacher is loaded in train(), not here: sampling never needs it
        self.process = FewStepProcess.vp(config.num_steps, config.beta_min, config.beta_max)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(INIT_SEED)
            self.G, self.D = build_networks(
                config.sample_shape, z_dim=0, base_channels=config.base_channels, channel_mults=config.channel_mults,
                width=config.width, num_layers=config.num_layers, emb_dim=config.emb_dim, conditional_d=False,
                fourier_octaves=config.fourier_octaves,
            )
        self.G_ema = copy.deepcopy(self.G).requires_grad_(False).eval()
        self.train_steps = 0
        self.device = torch.device("cpu")

    # ---- the student's chain --------------------------------------------------------------------

    def run_student(self, net: nn.Module, x_T: torch.Tensor, callback: StepCallback | None = None,
                    preview_every: int = 0) -> torch.Tensor:
        """x_T [N, ...] -> x_0 (the model's working scale) in num_steps steps; differentiable when grad is on."""
        x, x0 = x_T, x_T
        steps = self.config.num_steps
        for i, step in enumerate(range(steps, 0, -1)):
            t = torch.full((x.shape[0],), step, dtype=torch.long, device=x.device)
            x0 = net(x, t, None)
            if step > 1:
                x = self.process.ddim_step(x0, x, t)
            preview = self._output(x0) if preview_every and (i + 1) % preview_every == 0 else None
            report_step(callback, StepEvent(i + 1, steps, preview))  # a no-op without a callback (training)
        return x0

    def _output(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.config.data_scale
        return x.clamp(-1.0, 1.0) if self.output_kind == "image" else x

    # ---- training -------------------------------------------------------------------------------

    def teacher_pairs(self, teacher: GenerativeModel) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_T, teacher's DDIM sample) for num_pairs seeded noises, both [M, ...] on the CPU."""
        cfg = self.config
        seeds = per_sample_seeds(cfg.pair_seed, cfg.num_pairs)
        noises, targets = [], []
        for start in range(0, len(seeds), PAIR_CHUNK):
            chunk = seeds[start : start + PAIR_CHUNK]
            request = SampleRequest(seeds=chunk, sampler=cfg.teacher_sampler, steps=cfg.teacher_steps)
            y = teacher.sample(request).detach().to("cpu", torch.float32)
            if tuple(y.shape) != (len(chunk), *cfg.sample_shape):
                raise InvalidArgument("teacher", f"{cfg.teacher!r} samples have shape {list(y.shape[1:])}, the student "
                                      f"{list(cfg.sample_shape)}; distil a teacher trained on the same dataset")
            noises.append(NoiseSource(chunk).randn(*cfg.sample_shape))  # the teacher's x_T (its first draw)
            targets.append(y)
        return torch.cat(noises), torch.cat(targets)

    def train(
        self, dataset: Dataset, options: TrainOptions, progress: Callable[[TrainProgress], None] | None = None
    ) -> TrainResult:
        """Make teacher pairs, then regression + adversarial training of the student; seeded by ``options.seed``."""
        cfg = self.config
        check_dataset(dataset, cfg.sample_shape, "distill")
        check_options(options)
        if self.context.load_version is None:
            raise InvalidArgument("teacher", "distillation loads its teacher from the registry; train through the hub "
                                  "(`genhub train distill ...` or Hub.train), which provides BuildContext.load_version")
        started = time.perf_counter()
        x_T, targets = self.teacher_pairs(self.context.load_version(cfg.teacher))
        pair_time = time.perf_counter() - started
        self.to(options.device)
        targets = targets / cfg.data_scale
        data = dataset.data.to(torch.float32) / cfg.data_scale
        betas = (cfg.adam_beta1, cfg.adam_beta2)
        opt_g = torch.optim.Adam(self.G.parameters(), lr=options.learning_rate, betas=betas)
        opt_d = torch.optim.Adam(self.D.parameters(), lr=options.learning_rate * cfg.d_lr_ratio, betas=betas)
        log = LossLog(options.steps, ("d", "g", "regression"), progress)
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
                    d_loss = d_loss_nonsaturating(real_logits, D(out.detach(), None, None))
                    total = d_loss
                    if do_r1:
                        total = total + r1_penalty(real_logits, real) * (cfg.r1_gamma / 2 * cfg.r1_interval)
                    opt_d.zero_grad(set_to_none=True)
                    total.backward()
                    opt_d.step()
                    D.requires_grad_(False)
                    d_value = float(d_loss.detach())
                # -- student
                regression = F.mse_loss(out, targets[idx].to(self.device))
                loss = cfg.regression_weight * regression
                g_value = 0.0
                if cfg.adversarial_weight > 0:
                    g_loss = g_loss_nonsaturating(D(out, None, None))
                    loss = loss + cfg.adversarial_weight * g_loss
                    g_value = float(g_loss.detach())
                opt_g.zero_grad(set_to_none=True)
                loss.backward()
                opt_g.step()
                self.train_steps += 1
                ema_update(self.G_ema, G, ema_decay_at(self.train_steps, cfg.ema_decay))
                log.add(step, options.learning_rate, d=d_value, g=g_value, regression=float(regression.detach()))
        D.requires_grad_(True)
        G.eval()
        D.eval()
        return TrainResult(losses=log.losses, extra={
            "d_losses": log.curves["d"], "g_losses": log.curves["g"], "regression_losses": log.curves["regression"],
            "teacher": cfg.teacher, "teacher_pairs_s": pair_time, "log_every": log.every, "train_steps": self.train_steps,
        })

    # ---- sampling and weights -------------------------------------------------------------------

    @property
    def capabilities(self) -> Capabilities:
        """Unconditional, exactly ``num_steps`` trained steps; naming the family as the sampler is allowed."""
        n = self.config.num_steps
        return Capabilities(output_kind=self.output_kind, sample_shape=self.config.sample_shape, samplers=("distill",),
                            min_steps=n, max_steps=n, default_steps=n)

    def sample(self, request: SampleRequest, callback: StepCallback | None = None) -> torch.Tensor:
        """x_T from each seed exactly as the teacher draws it, then num_steps student steps (one StepEvent each)."""
        self.capabilities.check(request)
        x_T = NoiseSource(request.seeds, self.device).randn(*self.config.sample_shape)  # [N, ...]
        with torch.no_grad():
            x0 = self.run_student(self.G_ema, x_T, callback, request.preview_every)
        return self._output(x0)

    def _modules(self) -> dict[str, nn.Module]:
        return {"G": self.G, "D": self.D, "G_ema": self.G_ema}

    def state_dict(self) -> dict[str, torch.Tensor]:
        """``G.*``, ``D.*`` (to resume training), ``G_ema.*`` (sampled from) and ``train_steps``; no teacher weights."""
        return modules_state_dict(self._modules(), {"train_steps": torch.tensor([self.train_steps], dtype=torch.int64)})

    def load_state_dict(self, tensors: Mapping[str, torch.Tensor]) -> None:
        load_modules_state_dict(self._modules(), tensors)
        if "train_steps" in tensors:
            self.train_steps = int(tensors["train_steps"].reshape(-1)[0])

    def to(self, device: torch.device | str) -> DistillModel:
        self.device = torch.device(device)
        for module in self._modules().values():
            module.to(self.device)
        return self

    def describe(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "family": DistillFamily.name,
            "output_kind": self.output_kind,
            "sample_shape": list(cfg.sample_shape),
            "parameters": sum(p.numel() for p in self.G.parameters()),
            "steps": cfg.num_steps,
            "default_steps": cfg.num_steps,
            "teacher": cfg.teacher,
            "teacher_sampler": f"{cfg.teacher_sampler} x {cfg.teacher_steps}",
            "params": {},
            "train_steps": self.train_steps,
        }


class DistillPointsModel(DistillModel):
    output_kind: ClassVar[str] = "points"


class DistillFamily(ModelFamily):
    """A 1-4 step student of a registered diffusion teacher: regression to its DDIM outputs + adversarial loss."""

    name: ClassVar[str] = "distill"
    config_class: ClassVar[type[ModelConfig]] = DistillConfig
    description: ClassVar[str] = ("Adversarial distillation: a 1-4 step student of a registered diffusion teacher "
                                  "(regression to its DDIM outputs + GAN loss); --parent TEACHER:VERSION")
    # `genhub train distill --parent NAME:VERSION`: the hub pins the parent's exact version into this config key and
    # records it as lineage, instead of loading its weights into the student.
    parent_config_key: ClassVar[str] = "teacher"

    def build(self, config: ModelConfig, context: BuildContext) -> DistillModel:
        if not isinstance(config, DistillConfig):
            raise InvalidArgument("config", f"family 'distill' needs a DistillConfig, got {type(config).__name__}")
        return (DistillPointsModel if config.is_points else DistillModel)(config, context)

    def default_config(self, dataset: Dataset | None = None) -> DistillConfig:
        """Fitted to ``dataset``; the teacher defaults to the CLI's default name for a DDPM on it, ``ddpm-<dataset>``."""
        if dataset is None:
            return DistillConfig()
        teacher = f"ddpm-{dataset.name}"
        if dataset.kind == "points":
            return DistillConfig(sample_shape=tuple(dataset.sample_shape), teacher=teacher, r1_gamma=0.1)
        _, h, _ = dataset.sample_shape
        # base 16 at 16x16: the width the digits16 recipe (README) was tried with; it keeps a step cheap on a CPU
        return DistillConfig(sample_shape=tuple(dataset.sample_shape), teacher=teacher,
                             channel_mults=(1, 2) if h <= 8 else (1, 2, 2), base_channels=32 if h <= 8 else 16)
