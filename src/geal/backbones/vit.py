"""ViT backbone: patch tokens, CLS attention saliency and the CLS feature in one pass.

GEAL takes a ViT's patch tokens from the second-to-last block and weighs them by the
last block's CLS attention. The reference DINO code runs the model twice for that (once
for the tokens, once for the attention). Here one pass suffices: after block L-2 the
tokens are read off, and of the last block only the CLS row is computed: its query
against all keys gives the saliency, and finishing the block for that row alone
(attention output, projection, layer scales, MLP) gives the same CLS feature as the full
model's ``forward_features(x)[:, 0]``.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from geal.backbones.base import Backbone, BackboneOutput, Preprocess, normalise_rows
from geal.errors import GealError

logger = logging.getLogger(__name__)


def check_supported(model: nn.Module, name: str) -> None:
    """Raise a clear error unless ``model`` is a timm ViT whose last block we can take apart.

    Needed: a ``VisionTransformer`` with a class token, at least two blocks, and a last
    block of timm's standard pre-norm ``Block`` with the standard fused-qkv ``Attention``.
    """
    from timm.layers import Attention
    from timm.models.vision_transformer import Block, VisionTransformer

    problem = None
    if not isinstance(model, VisionTransformer):
        problem = f"{type(model).__name__} is not a timm VisionTransformer"
    elif getattr(model, "cls_token", None) is None:
        problem = "it has no class token, so there is no CLS attention"
    elif len(model.blocks) < 2:
        problem = "it has fewer than two blocks"
    else:
        last = model.blocks[-1]
        if not isinstance(last, Block):
            problem = f"its last block is a {type(last).__name__}, not timm's standard Block"
        elif not isinstance(last.attn, Attention) or not isinstance(last.attn.qkv, nn.Linear):
            problem = (
                f"its last block's attention is a {type(last.attn).__name__} without a fused qkv"
            )
    if problem:
        raise GealError(
            f"model {name!r} cannot be used as a ViT backbone: {problem}; "
            "use a timm ViT with a class token (e.g. dino_vits16) or a CNN"
        )


class ViTBackbone(Backbone):
    """A frozen timm ViT exposing tokens, saliency and the CLS feature (see module doc)."""

    def __init__(
        self,
        model: nn.Module,
        *,
        name: str,
        preprocess: Preprocess,
        weights_id: str,
        weights_sha256: str | None,
    ) -> None:
        check_supported(model, name)
        m: Any = model  # timm attributes are dynamic
        patch = m.patch_embed.patch_size
        super().__init__(
            name=name,
            kind="vit",
            dim=int(m.embed_dim),
            stride=int(patch[0]),
            preprocess=preprocess,
            weights_id=weights_id,
            weights_sha256=weights_sha256,
        )
        self.model = model
        self.num_prefix_tokens = int(m.num_prefix_tokens)
        self.freeze()

    def forward(self, images: torch.Tensor) -> BackboneOutput:
        """One pass over a [B, 3, H, W] batch; H and W must be multiples of the patch size."""
        m: Any = self.model
        _check_size(images, self.stride)
        with torch.no_grad():
            x = m.patch_embed(images.to(self.device))
            x = m._pos_embed(x)
            x = m.patch_drop(x)
            x = m.norm_pre(x)
            for block in m.blocks[:-1]:
                x = block(x)
            tokens = m.norm(x)[:, self.num_prefix_tokens :]
            saliency, cls = _last_block_cls(m.blocks[-1], x, self.num_prefix_tokens)
            global_ = m.norm(cls)[:, 0]
        return BackboneOutput(tokens=tokens.float(), saliency=saliency, global_=global_.float())


def _check_size(images: torch.Tensor, patch: int) -> None:
    if images.ndim != 4 or images.shape[-1] % patch or images.shape[-2] % patch:
        raise ValueError(
            f"expected [B, 3, H, W] with H, W multiples of {patch}, got {tuple(images.shape)}"
        )


def _last_block_cls(
    block: Any, x: torch.Tensor, num_prefix: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Saliency [B, T] and the block's output for the CLS row [B, 1, D], from its input x.

    q, k and v come from the block's qkv over every token (a large matrix product whose
    rows do not depend on the batch size); attention is formed for the CLS query only,
    in float32 even under autocast so the saliency does not inherit bf16 rounding. The
    rest of the block runs on the CLS row alone, image by image on the CPU: a [B, D]
    product would take a different BLAS path for B = 1 than for B > 1 and break the
    guarantee that an image's outputs do not depend on the batch it came in (on a GPU,
    where that guarantee does not hold for any kernel, the rows run batched).
    """
    attn = block.attn
    batch, length, _ = x.shape
    heads, head_dim = attn.num_heads, attn.head_dim
    width = heads * head_dim
    h = block.norm1(x)
    qkv = attn.qkv(h).reshape(batch, length, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
    q, k = attn.q_norm(qkv[0][:, :, :1]), attn.k_norm(qkv[1])
    with torch.autocast(device_type=x.device.type, enabled=False):
        # Contiguous operands: with strided views the matmul kernel (and its rounding)
        # would depend on whether the batch has one image or several.
        q, k, v = (t.float().contiguous() for t in (q, k, qkv[2]))
        logits = (q * attn.scale) @ k.transpose(-2, -1)  # [B, H, 1, N]
        probs = logits.softmax(dim=-1)
        saliency = normalise_rows(probs[:, :, 0, num_prefix:].mean(dim=1))
        mixed = (probs @ v).transpose(1, 2).reshape(batch, 1, width)
        dtype = attn.proj.weight.dtype
        if x.is_cuda:
            # GPU kernels are not bit-stable across batch sizes anyway; one batched call
            # instead of B tiny ones keeps the single pass faster than two passes
            row = _finish_cls_row(block, mixed.to(dtype), h[:, :1].to(dtype), x[:, :1].to(dtype))
            return saliency, row
        rows = [
            _finish_cls_row(
                block,
                mixed[i : i + 1].to(dtype).contiguous(),
                h[i : i + 1, :1].to(dtype).contiguous(),
                x[i : i + 1, :1].to(dtype).contiguous(),
            )
            for i in range(batch)
        ]
    return saliency, torch.cat(rows)


def _finish_cls_row(
    block: Any, mixed: torch.Tensor, h_cls: torch.Tensor, x_cls: torch.Tensor
) -> torch.Tensor:
    """The rest of a timm Block for one CLS row: attention output -> residual -> MLP -> residual."""
    attn = block.attn
    # Older timm releases have neither the scale norm nor the gate.
    out = attn.norm(mixed) if getattr(attn, "norm", None) is not None else mixed
    if getattr(attn, "gate", None) is not None:
        out = out * attn.gate(h_cls).sigmoid()
    cls = x_cls + block.ls1(attn.proj(out))
    return cls + block.ls2(block.mlp(block.norm2(cls)))


def two_pass_reference(backbone: ViTBackbone, images: torch.Tensor) -> BackboneOutput:
    """The reference way, as DINO's evaluation code does it: two full passes.

    Pass 1 runs every block and keeps the final-normed output of the second-to-last one
    (``get_intermediate_layers``) and the final CLS. Pass 2 runs the model again with the
    last block's attention computed the plain way (``fused_attn=False``) and captures its
    softmax. Used by the tests as ground truth and by benchmarks as the baseline.
    """
    m: Any = backbone.model
    last = m.blocks[-1]
    npt = backbone.num_prefix_tokens
    images = images.to(backbone.device)
    with torch.no_grad():
        final, inter = m.forward_intermediates(
            images, indices=[len(m.blocks) - 2], norm=True, output_fmt="NLC"
        )
        captured: list[torch.Tensor] = []
        hook = last.attn.attn_drop.register_forward_hook(
            lambda _mod, inp, _out: captured.append(inp[0])
        )
        fused = last.attn.fused_attn
        try:
            last.attn.fused_attn = False
            m.forward_features(images)
        finally:
            last.attn.fused_attn = fused
            hook.remove()
    probs = captured[0].float()
    saliency = probs[:, :, 0, npt:].mean(dim=1)
    saliency = saliency / saliency.sum(dim=-1, keepdim=True)
    return BackboneOutput(tokens=inter[0].float(), saliency=saliency, global_=final[:, 0].float())
