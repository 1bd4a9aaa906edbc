"""``genhub plugin new NAME``: write a plugin package that installs and passes its own test as generated.

The package holds a pyproject with the ``genhub`` entry point, an inference-only family (seeded noise through a
fixed filter, the filter being its weights), a bundled-checkpoint folder in the layout ``genhub export`` writes,
a README and a test. Authors replace the family's ``sample`` (and add ``train`` if the family trains).
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import torch

from safetensors.torch import save_file

from hub.errors import AlreadyExists, InvalidArgument

NAME = re.compile(r"^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$")

PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "genhub-{name}"
version = "0.1.0"
description = "The {name} model family for genhub"
readme = "README.md"
requires-python = ">=3.10"
dependencies = ["genhub", "torch"]

[project.optional-dependencies]
test = ["pytest>=8"]

# The hub discovers this module as a plugin through the `genhub` entry-point group.
[project.entry-points.genhub]
{module} = "genhub_{module}.plugin"

[tool.setuptools.packages.find]
include = ["genhub_{module}*"]

[tool.setuptools.package-data]
genhub_{module} = ["pretrained/**/*"]

[tool.pytest.ini_options]
testpaths = ["tests"]
"""

README = """\
# genhub-{name}

A genhub plugin: the `{name}` model family and its bundled checkpoint `{name}-demo`.

```sh
pip install ./genhub-{name}          # or pip install -e for development
pytest genhub-{name}/tests
genhub generate {name}-demo -n 16 -o {module}.png
```

- `genhub_{module}/family.py`: the model. Replace `sample` with your network; declare what it accepts in
  `capabilities` (the hub rejects any other request field before queueing). Add a `train` method if the family trains.
- `genhub_{module}/pretrained/{name}-demo/`: a bundled checkpoint (`model.safetensors`, `card.json`, `card.md`);
  `genhub export NAME DIR` writes new ones in this layout.
- `genhub_{module}/plugin.py`: the hooks that register the family and every folder under `pretrained/`.
"""

FAMILY = '''\
"""The "{name}" family: seeded noise through a fixed 3x3 filter. Replace ``sample`` with your model."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hub.model import (
    Capabilities,
    InferenceModel,
    ModelConfig,
    NoiseSource,
    Param,
    SampleRequest,
    StepCallback,
    simple_family,
)


@dataclass
class {cls}Config(ModelConfig):
    """Stored with each registered version as JSON."""

    sample_shape: tuple[int, ...] = (1, 16, 16)  # [C, H, W]

    def __post_init__(self) -> None:
        self.sample_shape = tuple(self.sample_shape)


class {cls}(InferenceModel):
    """Seeded noise through a fixed 3x3 filter (its weights), sharpened by the ``gain`` parameter."""

    config: {cls}Config

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(output_kind="image", sample_shape=self.config.sample_shape,
                            params={{"gain": Param(float, "contrast of the output", default=1.0, min=0.0, max=10.0)}})

    def sample(self, request: SampleRequest, callback: StepCallback | None = None) -> torch.Tensor:
        """[N, C, H, W] in [-1, 1]; image i depends only on request.seeds[i]."""
        noise = NoiseSource(request.seeds, self.device).randn(*self.config.sample_shape)
        out = torch.conv2d(noise, self.weights["kernel"], padding=1)  # kernel [C_out, C_in, 3, 3]
        return (out * self.capabilities.param(request, "gain")).clamp(-1.0, 1.0)


FAMILY = simple_family("{name}", {cls}, config_class={cls}Config)
'''

PLUGIN = '''\
"""genhub plugin entry point (group ``genhub``, name ``{module}``): the family and its bundled checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from hub import hookimpl
from hub.model import ModelFamily, PretrainedModel

from genhub_{module}.family import FAMILY

PRETRAINED = Path(__file__).parent / "pretrained"


@hookimpl
def register_models(register: Callable[[ModelFamily], None]) -> None:
    register(FAMILY)


@hookimpl
def register_pretrained(register: Callable[[PretrainedModel], None]) -> None:
    for folder in sorted(PRETRAINED.glob("*/card.json")):
        register(PretrainedModel.from_dir(folder.parent))
'''

TEST = '''\
"""The bundled checkpoint registers, generates per seed, and refuses what the model does not accept."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hub.core import Hub
from hub.errors import InvalidArgument
from hub.model import SampleRequest, per_sample_seeds


def test_the_bundled_checkpoint_generates_per_seed(tmp_path: Path) -> None:
    with Hub.open(home=tmp_path) as hub:
        assert hub.resolve("{name}-demo").family == "{name}"
        images = hub.generate("{name}-demo", SampleRequest.from_seed(0, 4)).samples
        assert images.shape == (4, 1, 16, 16) and images.abs().max() <= 1.0
        alone = hub.generate("{name}-demo", SampleRequest(seeds=per_sample_seeds(0, 4)[2:3])).samples
        torch.testing.assert_close(alone[0], images[2])
        assert not torch.equal(images[0], images[1])
        flat = hub.generate("{name}-demo", SampleRequest.from_seed(0, 4, params={{"gain": 0.0}})).samples
        assert flat.abs().max() == 0.0
        with pytest.raises(InvalidArgument, match="params"):
            hub.generate("{name}-demo", SampleRequest.from_seed(0, 1, params={{"gain": 11.0}}))
        with pytest.raises(InvalidArgument, match="class_labels"):
            hub.generate("{name}-demo", SampleRequest.from_seed(0, 1, class_labels=[0]))
'''

CARD = """\
# {name}-demo

The checkpoint `genhub plugin new {name}` wrote: a 3x3 filter of 1/3 over seeded noise (unit variance out). Replace it with your
model's weights (`genhub export NAME DIR` writes this layout).
"""


def module_name(name: str) -> str:
    """The import name of plugin ``name`` (``my-model`` -> ``my_model``), or an error naming the rule."""
    if not NAME.match(name):
        raise InvalidArgument("NAME", f"{name!r} must be lower case letters and digits, words joined by - or _, "
                              "starting with a letter (e.g. mymodel or my-model)")
    return name.replace("-", "_")


def new_plugin(name: str, parent: Path) -> Path:
    """Write ``parent/genhub-NAME`` and return it; an existing folder is left untouched (AlreadyExists)."""
    module = module_name(name)
    root = Path(parent) / f"genhub-{name}"
    if root.exists():
        raise AlreadyExists(f"{root} already exists; choose another NAME or --dir, or remove it first")
    fields = {"name": name, "module": module, "cls": "".join(part.title() for part in re.split(r"[-_]", name))}
    package = root / f"genhub_{module}"
    files = {
        root / "pyproject.toml": PYPROJECT,
        root / "README.md": README,
        package / "__init__.py": '"""The {name} model family for genhub."""\n',
        package / "family.py": FAMILY,
        package / "plugin.py": PLUGIN,
        package / "pretrained" / f"{name}-demo" / "card.md": CARD,
        root / "tests" / f"test_{module}.py": TEST,
    }
    for path, template in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(template).format(**fields))
    checkpoint = package / "pretrained" / f"{name}-demo"
    save_file({"kernel": torch.full((1, 1, 3, 3), 1.0 / 3.0)}, str(checkpoint / "model.safetensors"))
    card = {"name": f"{name}-demo", "family": name, "config": {"sample_shape": [1, 16, 16]}, "dataset": "external",
            "tags": ["demo"]}
    (checkpoint / "card.json").write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    return root
