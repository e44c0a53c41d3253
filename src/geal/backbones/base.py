"""What every backbone shares: preprocessing, the output type, the frozen module, devices."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageOps

from geal.errors import GealError
from geal.internal.images import to_rgb

logger = logging.getLogger(__name__)

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


@dataclass(frozen=True)
class Preprocess:
    """Turns one PIL image into the backbone's input tensor.

    The whole image is resized to ``image_size`` x ``image_size`` (no crop: selection has
    to see everything that might need a label). It is a frozen dataclass of plain values
    so that DataLoader worker processes can pickle it.

    Attributes:
        image_size: side of the square input in pixels.
        mean: per-channel mean subtracted from pixels scaled to 0..1.
        std: per-channel divisor applied after the mean.
        interpolation: PIL resampling filter name.
    """

    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"

    def __post_init__(self) -> None:
        if self.image_size <= 0:
            raise GealError(f"image size must be positive, got {self.image_size}")
        if self.interpolation not in _RESAMPLE:
            raise GealError(
                f"unknown interpolation {self.interpolation!r}; use one of: {', '.join(_RESAMPLE)}"
            )
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise GealError(f"mean and std need 3 values and std > 0, got {self.mean}, {self.std}")

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """Return a float32 tensor of shape [3, S, S]; same bytes in, same tensor out.

        JPEGs are decoded at a reduced scale that still covers S x S (``Image.draft``),
        which is much faster for large photos and deterministic. This configures the
        decoder of the image that is passed in. EXIF orientation is applied so the model
        sees the photo as people do; pixels wider than 8 bits are scaled by their real
        range (:func:`geal.internal.images.to_rgb`).
        """
        return self.normalize(self.pixels(image))

    def pixels(self, image: Image.Image) -> torch.Tensor:
        """The first half of :meth:`__call__`: the resized picture as uint8 ``[3, S, S]``.

        Batches of these go through :meth:`normalize` in one step, which gives the same
        values as :meth:`__call__` image by image at a fraction of the cost for small
        inputs, and moves a quarter of the bytes between processes.
        """
        size = self.image_size
        image.draft("RGB", (size, size))
        image = to_rgb(ImageOps.exif_transpose(image))
        if image.size != (size, size):  # PIL returns a copy at the same size
            image = image.resize((size, size), resample=_RESAMPLE[self.interpolation])
        return torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).permute(2, 0, 1)

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 ``[..., 3, S, S]`` from :meth:`pixels` -> the model's float32 input."""
        x = pixels.to(torch.float32).div_(255.0)
        mean = torch.tensor(self.mean, dtype=torch.float32).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(3, 1, 1)
        return x.sub_(mean).div_(std)


@dataclass
class BackboneOutput:
    """One forward pass over a batch.

    Attributes:
        tokens: [B, T, D] float32 dense tokens (ViT patches or CNN feature-map cells).
        saliency: [B, T] float32, non-negative, each row sums to 1.
        global_: [B, D] float32, one feature per image (ViT CLS, CNN mean cell).
    """

    tokens: torch.Tensor
    saliency: torch.Tensor
    global_: torch.Tensor


class Backbone(torch.nn.Module):
    """A frozen pre-trained model that maps images to tokens, saliency and a global feature.

    Always in eval mode with gradients off: selection never trains it.

    Attributes:
        name: the name it was created with (registry name or timm model name).
        kind: ``"vit"`` or ``"cnn"``.
        dim: token and global feature width D.
        stride: input pixels per token side (patch size or feature-map reduction).
        preprocess: how to turn a PIL image into one input tensor.
        weights_id: ``"random"``, the weights file path, or ``"hub:<timm name>"``.
        weights_sha256: sha256 of the weights file, None for random or hub weights.
    """

    name: str
    kind: str
    dim: int
    stride: int
    preprocess: Preprocess
    weights_id: str
    weights_sha256: str | None

    def __init__(
        self,
        *,
        name: str,
        kind: str,
        dim: int,
        stride: int,
        preprocess: Preprocess,
        weights_id: str,
        weights_sha256: str | None,
    ) -> None:
        super().__init__()
        self.name = name
        self.kind = kind
        self.dim = dim
        self.stride = stride
        self.preprocess = preprocess
        self.weights_id = weights_id
        self.weights_sha256 = weights_sha256

    def freeze(self) -> Backbone:
        """Put the module in eval mode and switch gradients off; returns self."""
        super().train(False)
        self.requires_grad_(False)
        return self

    def train(self, mode: bool = True) -> Backbone:
        """Stay in eval mode whatever is asked: dropout or BN updates would break determinism."""
        return super().train(False)

    @property
    def tokens_per_image(self) -> int:
        """Dense tokens T of one input image: (side / stride) squared, the side rounded up
        as padded convolutions do."""
        side = -(-self.preprocess.image_size // self.stride)
        return side * side

    @property
    def device(self) -> torch.device:
        """Device of the model's parameters."""
        for p in self.parameters():
            return p.device
        return torch.device("cpu")

    def forward(self, images: torch.Tensor) -> BackboneOutput:
        """Tokens, saliency and global feature of a [B, 3, H, W] batch of preprocessed images."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return (
            f"name={self.name!r}, kind={self.kind!r}, dim={self.dim}, weights={self.weights_id!r}"
        )


def saliency_from_norms(tokens: torch.Tensor) -> torch.Tensor:
    """L2 norm of each token, renormalised per image to sum 1 (uniform when all are zero)."""
    norms = torch.linalg.vector_norm(tokens.float(), dim=-1)
    return normalise_rows(norms)


def normalise_rows(weights: torch.Tensor) -> torch.Tensor:
    """Divide each row of non-negative weights by its sum; rows summing to 0 become uniform."""
    total = weights.sum(dim=-1, keepdim=True)
    uniform = torch.full_like(weights, 1.0 / weights.shape[-1])
    return torch.where(
        total > 0, weights / total.clamp_min(torch.finfo(weights.dtype).tiny), uniform
    )
