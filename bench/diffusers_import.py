"""An imported diffusers pipeline against the diffusers pipeline itself: same images, time per image, side by side.

    python bench/diffusers_import.py            # a small random-weight DDIMPipeline, DDIM-50, batch 1 and 8
    python bench/diffusers_import.py --quick    # a smoke run (seconds)
    python bench/diffusers_import.py --text     # a tiny StableDiffusionPipeline: prompts, guidance 7.5

Builds a DDIMPipeline (UNet2DModel, block_out_channels (32, 64), 32x32x3) with random weights, saves it,
imports it with ``genhub_diffusers.import_pipeline`` into a temp registry, then samples the same seeds both
ways: diffusers' ``DDIMPipeline.__call__`` with one generator per image, and ``Hub.generate`` (genhub's
``ddim`` sampler over the same UNet). Prints the wall time per image (median of the repeats), the largest
difference between the two outputs in [-1, 1] units, and, as the yardstick, the largest difference between
diffusers' own image of the first seed sampled alone and in the batch: a random-weight network expands
float32 rounding step after step, so over 50 steps neither diffusers nor genhub reproduces itself across
batch sizes (the 1e-4 parity of the tests holds for their tiny nets and 10 steps).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import diffusers  # noqa: E402

from hub.core import Hub  # noqa: E402
from hub.model import SampleRequest  # noqa: E402

from genhub_diffusers import import_pipeline  # noqa: E402


PROMPTS = ["a red circle", "blue square at the top", "green"]


def build(folder: Path, width: int, size: int) -> None:
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(
        sample_size=size, in_channels=3, out_channels=3, block_out_channels=(width, 2 * width), layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8, attention_head_dim=8,
    )
    diffusers.DDIMPipeline(unet=unet, scheduler=diffusers.DDIMScheduler()).save_pretrained(folder)


def timed(run, repeats: int) -> tuple[float, torch.Tensor]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--text", action="store_true", help="a tiny StableDiffusionPipeline (genhub_diffusers.testing), "
                        "prompts with guidance 7.5; needs genhub-diffusers[text]")
    args = parser.parse_args()
    width, size, steps, repeats, batches = (8, 8, 5, 1, (1, 2)) if args.quick else (32, 32, 50, 3, (1, 8))
    assert batches[0] == 1  # the first run gives each seed's image sampled alone
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "pipeline"
        if args.text:
            from genhub_diffusers.testing import save_text_pipeline

            save_text_pipeline(folder)
            pipe = diffusers.StableDiffusionPipeline.from_pretrained(folder)
        else:
            build(folder, width, size)
            pipe = diffusers.DDIMPipeline.from_pretrained(folder)
        pipe.set_progress_bar_config(disable=True)
        with Hub.open(db_url=f"sqlite:///{tmp}/r.db", home=Path(tmp) / "home", sync=False) as hub:
            ref = import_pipeline(hub, folder, "bench").ref
            hub.load(ref)
            for n in batches:
                seeds = list(range(100, 100 + n))
                prompts = [PROMPTS[i % len(PROMPTS)] for i in range(n)] if args.text else None

                def ours() -> torch.Tensor:
                    request = SampleRequest(seeds=seeds, steps=steps, prompts=prompts, guidance_scale=7.5 if prompts else None)
                    return hub.generate(ref, request, log=False).samples

                def theirs() -> torch.Tensor:
                    generators = [torch.Generator().manual_seed(s) for s in seeds]
                    kwargs = {"prompt": prompts, "guidance_scale": 7.5} if prompts else {"batch_size": n}
                    images = pipe(generator=generators, num_inference_steps=steps, output_type="np", **kwargs).images
                    return torch.from_numpy(np.asarray(images)).permute(0, 3, 1, 2) * 2 - 1

                t_ours, a = timed(ours, repeats)
                t_theirs, b = timed(theirs, repeats)
                if n == 1:
                    alone = b[0]
                rows.append((n, t_theirs / n * 1e3, t_ours / n * 1e3, float((a - b).abs().max()), float((b[0] - alone).abs().max())))
    params = sum(p.numel() for p in pipe.unet.parameters())
    shape = "16x16x3 (8x8x4 latents), prompts, guidance 7.5" if args.text else f"{size}x{size}x3"
    print(f"DDIM-{steps}, {type(pipe.unet).__name__} {params / 1e6:.2f} M params, {shape}, on {platform.machine()} "
          f"x{torch.get_num_threads()} thread(s), torch {torch.__version__}, diffusers {diffusers.__version__}")
    print(f"{'batch':>5}  {'diffusers ms/img':>16}  {'genhub ms/img':>13}  {'max |genhub - diffusers|':>24}  "
          f"{'max |diffusers alone - in batch|':>32}")
    for n, theirs_ms, ours_ms, diff, self_diff in rows:
        print(f"{n:>5}  {theirs_ms:>16.1f}  {ours_ms:>13.1f}  {diff:>24.2e}  {self_diff:>32.2e}")


if __name__ == "__main__":
    main()
