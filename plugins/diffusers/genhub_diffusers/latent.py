"""Text-to-image latent pipelines laid out as Stable Diffusion: a ``UNet2DConditionModel`` denoising an
``AutoencoderKL``'s latents, conditioned on a CLIP text encoder's last hidden states.

Sampled as ``StableDiffusionPipeline`` samples (prompts padded to the tokenizer's length, the empty prompt as
the unconditional input, latents decoded after dividing by the VAE's ``scaling_factor``) but through genhub's
own samplers and engine. Two deliberate differences, both errors rather than silent changes: a prompt longer
than the tokenizer's ``model_max_length`` is refused (the pipeline truncates it), and ``guidance_scale`` means
genhub's uncond + g * (cond - uncond) for every g except 1 (the pipeline skips guidance for any g <= 1).

transformers (``pip install genhub-diffusers[text]``) builds the text encoder and the tokenizer; nothing is
downloaded: the networks come from the stored configs and the tokenizer from its files, stored in the
version's weights as bytes ("tokenizer.<file name>", uint8).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from hub.errors import FailedPrecondition, InvalidArgument
from hub.model import BuildContext, SampleRequest

from genhub_diffusers.family import DiffusersConfig, DiffusersModel
from genhub_diffusers.pipeline import check_unet, check_vae

TOKENIZER = "tokenizer."  # weights keys of the tokenizer's files


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise FailedPrecondition(
            "a StableDiffusionPipeline needs transformers for its CLIP text encoder: pip install 'genhub-diffusers[text]'"
        ) from None
    return transformers


def file_tensors(files: Mapping[str, Path]) -> dict[str, torch.Tensor]:
    """Tokenizer files as uint8 tensors under "tokenizer.<name>", so they live in the content-addressed weights."""
    return {TOKENIZER + name: torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8) for name, path in files.items()}


class TextToImageModel(DiffusersModel):
    """An imported StableDiffusionPipeline: prompts (or none), classifier-free guidance, any registered sampler."""

    def __init__(self, config: DiffusersConfig, context: BuildContext) -> None:
        self.tokenizer: Any = None  # built from its files when the weights load
        self.tokenizer_files: dict[str, torch.Tensor] = {}
        super().__init__(config, context)
        self.scale = check_vae(config.vae, self.noise_shape[0])  # image pixels per latent pixel
        _, h, w = self.noise_shape
        self.sample_shape = (int(config.vae.get("out_channels", 3)), h * self.scale, w * self.scale)
        self.scaling_factor = float(config.vae.get("scaling_factor", 0.18215))

    @property
    def noise_shape(self) -> tuple[int, ...]:
        return check_unet(self.config.unet)  # [C, h, w] latents

    def build_modules(self) -> dict[str, nn.Module]:
        from diffusers import AutoencoderKL, UNet2DConditionModel

        tf = _transformers()
        text_config = {k: v for k, v in self.config.text_encoder.items() if k not in ("architectures", "transformers_version")}
        return {"unet": UNet2DConditionModel.from_config(self.config.unet), "vae": AutoencoderKL.from_config(self.config.vae),
                "text_encoder": tf.CLIPTextModel(tf.CLIPTextConfig.from_dict(text_config))}

    def conditioning(self) -> dict[str, Any]:
        """A prompt per sample (none: the empty prompt, unguided), classifier-free guidance, negative prompts."""
        return {"prompts": True, "guidance": True, "default_guidance": self.config.default_guidance, "negative_prompts": True}

    def _guidance(self, request: SampleRequest) -> float | None:
        guidance = request.guidance_scale
        if request.prompts is None:
            return None  # the empty prompt alone: nothing to guide toward
        guidance = self.config.default_guidance if guidance is None else guidance
        return None if guidance == 1.0 else guidance

    def condition(self, request: SampleRequest) -> torch.Tensor:
        """The text encoder's hidden states [R, L, D] for the request's rows: [prompts; negative or empty prompts] when
        guided, as the pipeline's prompt_embeds and negative_prompt_embeds."""
        n = request.num_samples
        if request.prompts is None:
            return self.encode([""]).expand(n, -1, -1)
        prompts = list(request.prompts)
        negatives = list(request.negative_prompts) if request.negative_prompts is not None else [""] * n
        return self.encode(prompts if self._guidance(request) is None else prompts + negatives)

    def encode(self, prompts: list[str]) -> torch.Tensor:
        """[N, L, D]: the prompts padded to the tokenizer's length, as StableDiffusionPipeline.encode_prompt does."""
        tokenizer = self.tokenizer
        if tokenizer is None:
            raise FailedPrecondition("this text-to-image model has no tokenizer yet: load its weights first")
        length = tokenizer.model_max_length
        for prompt in dict.fromkeys(prompts):
            count = len(tokenizer(prompt, truncation=False).input_ids)
            if count > length:
                raise InvalidArgument("prompt", f"is {count} tokens, more than this model's {length} (its tokenizer's "
                                                f"model_max_length); shorten it: {prompt[:80]!r}")
        tokens = tokenizer(prompts, padding="max_length", max_length=length, truncation=True, return_tensors="pt")
        encoder = self.modules["text_encoder"]
        mask = tokens.attention_mask.to(self.device) if getattr(encoder.config, "use_attention_mask", False) else None
        with torch.no_grad():
            return encoder(tokens.input_ids.to(self.device), attention_mask=mask)[0]

    def network_pass(self, x: torch.Tensor, t: torch.Tensor, conds: list[Any], rows: list[int]) -> torch.Tensor:
        # x: [R, C, h, w] latents, t: [R]; conds: text hidden states [R_i, L, D] per trajectory (L: the tokenizer's)
        return self.unet(x, t, encoder_hidden_states=torch.cat(conds)).sample

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        """Latents [N, C, h, w] -> images [N, C, H, W] in [-1, 1], as the pipeline's VAE decode."""
        with torch.no_grad():
            return self.modules["vae"].decode(x / self.scaling_factor).sample.clamp(-1.0, 1.0)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {**super().state_dict(), **{k: v.clone() for k, v in self.tokenizer_files.items()}}

    def load_state_dict(self, tensors: Mapping[str, torch.Tensor]) -> None:
        files = {k: v for k, v in tensors.items() if k.startswith(TOKENIZER)}
        if not files:
            raise InvalidArgument("weights", "hold no tokenizer files (tokenizer.<name>); re-import the pipeline folder")
        super().load_state_dict({k: v for k, v in tensors.items() if not k.startswith(TOKENIZER)})
        tf = _transformers()
        with tempfile.TemporaryDirectory(prefix="genhub-tokenizer-") as folder:
            (Path(folder) / "tokenizer_config.json").write_text(json.dumps(self.config.tokenizer))  # kept in the config
            for key, data in files.items():
                name = key[len(TOKENIZER):]
                if "/" in name or "\\" in name or name.startswith("."):
                    raise InvalidArgument("weights", f"tokenizer file name {name!r} is not a plain file name")
                (Path(folder) / name).write_bytes(data.to(torch.uint8).numpy().tobytes())
            try:
                self.tokenizer = tf.CLIPTokenizer.from_pretrained(folder, local_files_only=True)
            except (OSError, ValueError, Exception) as exc:  # noqa: BLE001 - transformers raises many kinds
                raise InvalidArgument("weights", f"the stored tokenizer files {sorted(files)} do not load: {exc}") from None
        self.tokenizer_files = dict(files)
