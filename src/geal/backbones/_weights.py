"""Where a backbone's weights come from, and how a checkpoint is made to fit the model.

Everything about weights happens here: ``random``, a local file (DINO plain or full
checkpoints, timm state dicts, ``.safetensors``), weights shipped in a Python package, or
the model's published weights from the local timm/Hugging Face/torch-hub caches or the
hub. Pickled checkpoints are read with ``weights_only=True`` so that a file can never
run code. Every failure becomes one :class:`WeightsError` line that says what to do.
Without a network (``HF_HUB_OFFLINE=1`` or ``GEAL_OFFLINE=1``, or a probe of a few
seconds that cannot reach the hub) that line comes at once, not after the hub client's
minute of retries.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import pickle
import socket
import threading
import urllib.request
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import torch

from geal.errors import GealError, WeightsError
from geal.internal.io import sha256_file

if TYPE_CHECKING:
    from geal.backbones.registry import BackboneSpec

logger = logging.getLogger(__name__)

StateDict = dict[str, torch.Tensor]

# Wrappers whose names prefix every key: DDP, DINO's MultiCropWrapper, torch.compile.
_PREFIXES = ("module.", "backbone.", "_orig_mod.")
# Keys under which training checkpoints nest the weights, most preferred first
# (DINO/iBOT keep the teacher, which is what they evaluate).
_NESTING = ("teacher", "model_ema", "state_dict_ema", "model", "state_dict", "module")
_TRUE = {"1", "true", "yes", "on"}
# Seconds the network probe waits before weights are declared unreachable.
PROBE_TIMEOUT = 3.0
_CHATTY_LOGGERS = ("huggingface_hub", "urllib3", "filelock")


@dataclass(frozen=True)
class ResolvedWeights:
    """The outcome of resolving a ``weights`` argument.

    Attributes:
        source: ``"random"``, ``"file"`` (a local state dict is in ``state_dict``) or
            ``"hub"`` (let timm fetch the published weights).
        weights_id: ``"random"``, the file path, or ``"hub:<timm name>"``.
        sha256: digest of the file the weights came from; None for random and hub.
        state_dict: the loaded tensors when ``source == "file"`` (also for cached hub files).
    """

    source: str
    weights_id: str
    sha256: str | None = None
    state_dict: StateDict | None = None


def is_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` or ``GEAL_OFFLINE`` asks not to touch the network."""
    return any(
        os.environ.get(v, "").strip().lower() in _TRUE for v in ("HF_HUB_OFFLINE", "GEAL_OFFLINE")
    )


def resolve_weights(
    spec: BackboneSpec, weights: str | None, pretrained_cfg: Mapping[str, Any]
) -> ResolvedWeights:
    """Decide where the weights of ``spec`` come from and load any local file.

    Args:
        spec: the backbone being built.
        weights: ``None`` (published weights), ``"random"`` or a path to a checkpoint.
        pretrained_cfg: timm's pretrained config of ``spec.timm_name`` (URLs, hub id).
    """
    if weights == "random":
        return ResolvedWeights("random", "random")
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsError(
                f"weights file {path} not found (pass --weights PATH to a checkpoint, or random)"
            )
        return _from_file(spec, path, weights_id=str(path.resolve()), record_sha=True)
    if spec.packaged_weights is not None:
        path = spec.packaged_weights()
        return _from_file(spec, path, weights_id=str(path), record_sha=True)
    if not (pretrained_cfg.get("url") or pretrained_cfg.get("hf_hub_id") or spec.weights_url):
        raise WeightsError(
            f"model {spec.name!r} has no published weights: pass --weights PATH to a checkpoint "
            "(or --weights random for an untrained model)"
        )
    hub_id = f"hub:{_timm_full_name(spec, pretrained_cfg)}"
    cached = _cached_hub_file(spec, pretrained_cfg)
    if cached is not None:
        logger.info("using cached weights %s for %s", cached, spec.name)
        return _from_file(spec, cached, weights_id=hub_id, record_sha=False)
    if is_offline():
        raise missing_weights_error(spec, pretrained_cfg, "offline and not in the local cache")
    url = hub_url(spec, pretrained_cfg)
    if not network_reachable(url):
        host = urlparse(url).hostname
        raise missing_weights_error(
            spec,
            pretrained_cfg,
            f"no network: {host} cannot be reached, nothing in the local cache",
        )
    return ResolvedWeights("hub", hub_id)


def _from_file(
    spec: BackboneSpec, path: Path, *, weights_id: str, record_sha: bool
) -> ResolvedWeights:
    state_dict = load_weights_file(path)
    if spec.convert is not None:
        state_dict = spec.convert(state_dict)
    sha = sha256_file(path) if record_sha else None
    return ResolvedWeights("file", weights_id, sha, state_dict)


def _timm_full_name(spec: BackboneSpec, cfg: Mapping[str, Any]) -> str:
    arch, tag = cfg.get("architecture"), cfg.get("tag")
    return f"{arch}.{tag}" if arch and tag else spec.timm_name


def _cached_hub_file(spec: BackboneSpec, cfg: Mapping[str, Any]) -> Path | None:
    """A copy of the published weights already on disk (Hugging Face or torch-hub cache)."""
    hf_id = cfg.get("hf_hub_id")
    if hf_id:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:  # pragma: no cover - timm depends on huggingface_hub
            pass
        else:
            names = (
                [cfg["hf_hub_filename"]]
                if cfg.get("hf_hub_filename")
                else ["model.safetensors", "pytorch_model.bin"]
            )
            for name in names:
                hit = try_to_load_from_cache(hf_id, name)
                if isinstance(hit, str) and Path(hit).is_file():
                    return Path(hit)
    for url in (spec.weights_url, cfg.get("url")):
        if url:
            path = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name
            if path.is_file():
                return path
    return None


def hub_url(spec: BackboneSpec, cfg: Mapping[str, Any]) -> str:
    """Where timm fetches the published weights from: the Hugging Face hub when the
    config names a hub repository (``HF_ENDPOINT`` honoured), else the checkpoint URL."""
    if cfg.get("hf_hub_id"):
        return os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    return str(cfg.get("url") or spec.weights_url or "https://huggingface.co")


def network_reachable(url: str, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether a TCP connection to ``url``'s host (or the proxy serving it) opens within
    ``timeout`` seconds, name lookup included.

    One short probe instead of the hub client's minute of retries: without a network the
    answer comes in seconds and the caller can say at once how to supply the weights.
    """
    parsed = urlparse(url)
    host = parsed.hostname or ""
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(parsed.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        p = urlparse(proxy if "://" in proxy else f"http://{proxy}")
        host, port = p.hostname or host, p.port or 80
    answer: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                answer.append(True)
        except OSError as exc:
            logger.debug("cannot reach %s:%s: %s", host, port, exc)
            answer.append(False)

    thread = threading.Thread(target=probe, name="geal-network-probe", daemon=True)
    thread.start()
    thread.join(timeout)  # bounds the name lookup too, which has no timeout of its own
    return bool(answer and answer[0])


@contextlib.contextmanager
def quiet_downloads() -> Iterator[None]:
    """Hold back the hub client's retry warnings while timm fetches weights.

    Each failed attempt logs a warning through ``huggingface_hub`` (and ``urllib3``);
    whatever finally fails becomes one :class:`WeightsError` line instead.
    """
    loggers = [logging.getLogger(name) for name in _CHATTY_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def download_hint(spec: BackboneSpec, cfg: Mapping[str, Any]) -> str:
    """Where a user can fetch the weights by hand."""
    if spec.weights_url:
        return spec.weights_url
    if cfg.get("hf_hub_id"):
        name = cfg.get("hf_hub_filename") or "model.safetensors"
        return f"https://huggingface.co/{cfg['hf_hub_id']}/resolve/main/{name}"
    return str(cfg.get("url") or "the model's published checkpoint")


def missing_weights_error(spec: BackboneSpec, cfg: Mapping[str, Any], reason: str) -> WeightsError:
    """The one-line error for published weights that cannot be had."""
    return WeightsError(
        f"weights for {spec.name!r} are not available ({reason}): download "
        f"{download_hint(spec, cfg)} and pass it with --weights PATH (or --weights random for an untrained model)"
    )


@contextlib.contextmanager
def hub_errors(spec: BackboneSpec, cfg: Mapping[str, Any]) -> Iterator[None]:
    """Turn whatever timm / Hugging Face / urllib raise while fetching weights into one
    line, with their retry warnings held back (:func:`quiet_downloads`)."""
    try:
        with quiet_downloads():
            yield
    except GealError:
        raise
    except Exception as exc:  # network, cache and format errors come in many types
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
        reason = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
        raise missing_weights_error(spec, cfg, reason) from exc


def load_weights_file(path: str | Path) -> StateDict:
    """Read a checkpoint into a flat CPU state dict without running any code from it.

    ``.safetensors`` files are read with safetensors; anything else with
    ``torch.load(weights_only=True)`` (``argparse.Namespace`` is allowed, since DINO's full
    checkpoints store their arguments in one). Nested checkpoints are unwrapped and
    wrapper prefixes stripped (see :func:`unwrap_checkpoint`).
    """
    path = Path(path)
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            return unwrap_checkpoint(load_file(str(path), device="cpu"), str(path))
        except Exception as exc:
            raise WeightsError(f"cannot read {path} as safetensors: {_first_line(exc)}") from exc
    allow = (
        torch.serialization.safe_globals([argparse.Namespace])
        if hasattr(torch.serialization, "safe_globals")  # torch >= 2.5
        else contextlib.nullcontext()
    )
    try:
        with allow:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise WeightsError(
            f"refusing to load {path}: it holds Python objects other than tensors and plain "
            "containers, and unpickling them could run code; save a plain state dict or .safetensors"
        ) from exc
    except Exception as exc:
        raise WeightsError(f"cannot read weights file {path}: {_first_line(exc)}") from exc
    return unwrap_checkpoint(obj, str(path))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def unwrap_checkpoint(obj: Any, source: str) -> StateDict:
    """Find the state dict inside a checkpoint and strip wrapper prefixes from its keys.

    Training checkpoints nest the weights (``teacher`` for DINO, ``model``,
    ``state_dict``, ...); DDP and DINO's multi-crop wrapper prefix keys with ``module.``
    and ``backbone.``. Non-tensor entries are dropped.
    """
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{source} does not hold a state dict (found {type(obj).__name__})")
    while True:
        nested = next((obj[k] for k in _NESTING if isinstance(obj.get(k), Mapping)), None)
        if nested is None:
            break
        obj = nested
    out: StateDict = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            continue
        name = str(key)
        stripped = True
        while stripped:
            stripped = False
            for prefix in _PREFIXES:
                if name.startswith(prefix):
                    name, stripped = name[len(prefix) :], True
        out[name] = value
    if not out:
        keys = ", ".join(list(map(str, obj))[:5])
        raise WeightsError(f"{source} holds no tensors (top-level keys: {keys})")
    return out


def _classifier_names(model: torch.nn.Module) -> tuple[str, ...]:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    names = cfg.get("classifier") or ()
    return (names,) if isinstance(names, str) else tuple(names)


def _fit(
    state_dict: StateDict,
    expected: Mapping[str, torch.Size],
    *,
    classifier_names: tuple[str, ...],
    model_name: str,
    source: str,
) -> StateDict:
    """Drop projection/classifier heads the model lacks, then demand an exact key and shape match."""
    heads = ("head.", *(f"{name}." for name in classifier_names))
    kept = {k: v for k, v in state_dict.items() if k in expected or not k.startswith(heads)}
    dropped = len(state_dict) - len(kept)
    if dropped:
        logger.debug("dropped %d head keys from %s", dropped, source)
    # Old checkpoints lack BatchNorm's step counter; it does not affect inference.
    missing = [k for k in expected if k not in kept and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in kept if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys ({_few(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({_few(unexpected)})")
        raise WeightsError(f"{source} does not fit {model_name}: " + "; ".join(parts))
    wrong = [
        f"{k} {tuple(kept[k].shape)} vs {tuple(expected[k])}"
        for k in kept
        if kept[k].shape != expected[k]
    ]
    if wrong:
        raise WeightsError(
            f"{source} does not fit {model_name}: {len(wrong)} shape mismatches ({_few(wrong)})"
        )
    return kept


def _few(items: list[str], n: int = 4) -> str:
    return ", ".join(items[:n]) + (", ..." if len(items) > n else "")


def load_into_model(
    model: torch.nn.Module, state_dict: StateDict, *, model_name: str, source: str
) -> None:
    """Load ``state_dict`` into a full timm model, exactly.

    ViT checkpoints go through timm's ViT checkpoint filter first, which converts DINOv2
    layouts and interpolates ``pos_embed`` (and the patch embedding) when the checkpoint
    was trained at another grid size.

    Raises:
        WeightsError: keys missing or unexpected, or shapes that do not match.
    """
    from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn

    if isinstance(model, VisionTransformer):
        try:
            state_dict = checkpoint_filter_fn(dict(state_dict), model)
        except Exception as exc:
            raise WeightsError(
                f"{source} cannot be adapted to {model_name}: {_first_line(exc)}"
            ) from exc
    expected = {k: v.shape for k, v in model.state_dict().items()}
    fitted = _fit(
        state_dict,
        expected,
        classifier_names=_classifier_names(model),
        model_name=model_name,
        source=source,
    )
    model.load_state_dict(fitted, strict=False)


def load_into_features(
    features: torch.nn.Module,
    full_model: torch.nn.Module,
    state_dict: StateDict,
    *,
    model_name: str,
    source: str,
) -> None:
    """Load a full-model state dict into a timm ``features_only`` model.

    The checkpoint is first checked exactly against the full model (``full_model``, which
    may live on the meta device); the feature extractor then takes the keys it kept. Its
    key names can differ from the full model's: nested sequentials are flattened
    (``stages.0`` -> ``stages_0``) and getter wrappers add ``model.``.
    """
    expected = {k: v.shape for k, v in full_model.state_dict().items()}
    fitted = _fit(
        state_dict,
        expected,
        classifier_names=_classifier_names(full_model),
        model_name=model_name,
        source=source,
    )
    target: StateDict = {}
    unmapped = []
    for key in features.state_dict():
        src = _feature_source_key(key, expected)
        if src is None:
            unmapped.append(key)
        elif src in fitted:
            target[key] = fitted[src]
    if unmapped:
        raise WeightsError(
            f"cannot match feature extractor keys of {model_name} to its checkpoint: {_few(unmapped)}"
        )
    result = features.load_state_dict(target, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing:  # pragma: no cover - _fit already demanded every key
        raise WeightsError(f"{source} leaves {model_name} keys unset: {_few(missing)}")


def _feature_source_key(key: str, available: Mapping[str, Any]) -> str | None:
    candidates = [key]
    if key.startswith("model."):
        candidates.append(key[len("model.") :])
    head, dot, rest = key.partition(".")
    candidates += [
        head[:i] + "." + head[i + 1 :] + dot + rest for i, c in enumerate(head) if c == "_"
    ]
    return next((c for c in candidates if c in available), None)
