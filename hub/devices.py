"""Which device to run on, and how to describe the hardware a figure was measured on."""

from __future__ import annotations

import os
import platform

import torch


def default_device() -> torch.device:
    """GENHUB_DEVICE if set, else the first CUDA GPU if there is one, else the CPU."""
    wanted = os.environ.get("GENHUB_DEVICE")
    if wanted:
        return torch.device(wanted)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def hardware_description(device: torch.device | str | None = None) -> str:
    """A short, stable description such as 'cpu x2 (x86_64), torch 2.13.0+cpu'."""
    device = torch.device(device) if device is not None else default_device()
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return f"cuda {name}, torch {torch.__version__}"
    return f"cpu x{torch.get_num_threads()} ({platform.machine()}), torch {torch.__version__}"
