"""Checkpoint bundles: ``model.safetensors`` + ``model.json`` (the model card), saved atomically, loaded safely.

A bundle is checked completely before anything is built: the card's format version and fields, the text encoder,
the weight file's integrity (SHA-256 recorded in the card), and every tensor name and shape. A broken bundle raises
one :class:`BundleError` naming the problem; a model is never half-loaded.
"""

import copy
import hashlib
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import torch

from .atomic import file_mode, make_temp_dir, replace_dir
from .device import resolve_device
from .model import ModelConfig, TextSegmentModel, build_model
from .model.text_encoder import TextEncoderUnavailable, resolve_text_encoder_path, text_encoder_problem

FORMAT_VERSION = 1
#: the first TextSegment release able to read each bundle format version
FORMAT_MIN_RELEASE = {1: "0.1.0"}
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "model.json"
REQUIRED_CARD_FIELDS = ("format_version", "name", "architecture", "text_encoder", "input", "vocabulary", "license")
#: the JSON type each card field must have (a hand-edited card with another type is refused, never half-used)
CARD_FIELD_TYPES = {
    **dict.fromkeys(("name", "license", "weights_sha256", "version"), str),
    **dict.fromkeys(("architecture", "text_encoder", "input", "training_data", "metrics"), dict),
    "vocabulary": list,
}
DEFAULT_INPUT_SPEC: Dict[str, Any] = {
    "slice_axis": "axial",
    "orientation": "LPS",
    "ct_windows": {
        "soft_tissue": [40, 400],
        "lung": [-600, 1500],
        "bone": [400, 1800],
        "brain": [40, 80],
    },
    "default_ct_window": "soft_tissue",
    "mr_percentiles": [0.5, 99.5],
    "intensity_range": [0, 255],
}


class BundleError(ValueError):
    """A checkpoint bundle cannot be used; the message says why and what to do."""


PathLike = Union[str, Path]


def sha256_file(path: PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def make_card(model: TextSegmentModel, card: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Complete a (partial) model card with the architecture, text encoder and input spec of ``model``."""
    out: Dict[str, Any] = copy.deepcopy(card) if card else {}
    cfg = model.config.to_dict()
    out["format_version"] = FORMAT_VERSION
    out.setdefault("name", "textsegment-custom")
    out.setdefault("version", "0.0.0")
    out["architecture"] = {k: v for k, v in cfg.items() if k != "text"}
    text = dict(cfg["text"])
    text.setdefault("revision", None)
    out["text_encoder"] = {**text, **out.get("text_encoder", {})}
    spec = copy.deepcopy(DEFAULT_INPUT_SPEC)
    spec.update(out.get("input", {}))
    spec["image_size"] = model.config.image_size
    spec["slice_context"] = model.config.slice_context
    out["input"] = spec
    out.setdefault("vocabulary", [])
    out.setdefault("training_data", {})
    out.setdefault("metrics", {})
    out.setdefault("license", "Apache-2.0")
    return out


def save_bundle(
    model: TextSegmentModel, directory: PathLike, card: Optional[Dict[str, Any]] = None, half: bool = False
) -> Path:
    """Write ``model.safetensors`` and ``model.json`` into ``directory`` atomically and return it.

    The bundle is written to a temporary sibling folder, checked by loading it, and only then moved into place;
    an existing bundle at ``directory`` is replaced only after the new one is complete. ``half`` stores fp16 weights.

    Example:
        >>> import tempfile
        >>> from TextSegmentLib.model import build_model
        >>> m = build_model({"image_size": 64, "embed_dim": 32, "decoder_heads": 4, "decoder_mlp_dim": 64})
        >>> d = save_bundle(m, Path(tempfile.mkdtemp()) / "tiny", {"name": "tiny"})
        >>> load_bundle(d).config.image_size
        64
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    full = make_card(model, card)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if half:
        state = {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}
    full["weights_dtype"] = "float16" if half else "float32"
    tmp = make_temp_dir(directory.parent, f".{directory.name}.")  # the umask's mode, not mkdtemp's 0700
    try:
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format_version": str(FORMAT_VERSION)})
        os.chmod(tmp / WEIGHTS_FILE, file_mode())  # safetensors creates it 0600, whatever the umask
        full["weights_sha256"] = sha256_file(tmp / WEIGHTS_FILE)
        with open(tmp / CARD_FILE, "w", encoding="utf-8") as fh:
            json.dump(full, fh, indent=2)
        check_bundle(tmp)
        replace_dir(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


_AXES = ("axial", "coronal", "sagittal")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _input_problem(spec: Dict[str, Any]) -> Optional[str]:
    """What is wrong with a card's ``input`` spec (the fields the engine reads), or None."""
    if "slice_axis" in spec and spec["slice_axis"] not in _AXES:
        return f"input.slice_axis {spec['slice_axis']!r} must be one of {list(_AXES)}"
    planes = spec.get("planes")
    if planes is not None and (not isinstance(planes, list) or not planes or any(p not in _AXES for p in planes)):
        return f"input.planes {planes!r} must be a non-empty list of {list(_AXES)}"
    low_high = spec.get("mr_percentiles")
    if low_high is not None and not (
        isinstance(low_high, list) and len(low_high) == 2 and all(_number(v) for v in low_high)
        and 0 <= low_high[0] < low_high[1] <= 100
    ):  # fmt: skip
        return f"input.mr_percentiles {low_high!r} must be two percentiles [low, high] with 0 <= low < high <= 100"
    windows = spec.get("ct_windows")
    if windows is not None and not isinstance(windows, dict):
        return f"input.ct_windows must be an object {{name: [level, width]}}, got {type(windows).__name__}"
    for key in ("default_ct_window", "orientation"):
        if spec.get(key) is not None and not isinstance(spec[key], str):
            return f"input.{key} must be text, got {spec[key]!r}"
    if not isinstance(spec.get("align_head", False), bool):
        return f"input.align_head must be true or false, got {spec['align_head']!r}"
    return None


def _vocabulary_problem(vocabulary: List[Any]) -> Optional[str]:
    """What is wrong with a card's ``vocabulary`` (a list of {name, synonyms, ...}), or None."""
    for n, item in enumerate(vocabulary):
        if isinstance(item, str) and item.strip():
            continue  # a structure's name alone
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"].strip():
            return f"vocabulary[{n}] must be a name or an object with a 'name' (text)"
        threshold = item.get("mask_threshold")
        if threshold is not None and not (_number(threshold) and 0 <= threshold <= 1):
            return f"vocabulary[{n}] ('{item['name']}'): mask_threshold must be a number from 0 to 1"
        for key in ("fill_holes", "largest_only"):
            if item.get(key) is not None and not isinstance(item[key], bool):
                return f"vocabulary[{n}] ('{item['name']}'): {key} must be true or false"
        synonyms = item.get("synonyms", [])
        if not isinstance(synonyms, list) or not all(isinstance(v, str) for v in synonyms):
            return f"vocabulary[{n}] ('{item['name']}'): synonyms must be a list of texts"
        for key in ("ct_window", "region"):
            if item.get(key) is not None and not isinstance(item[key], str):
                return f"vocabulary[{n}] ('{item['name']}'): {key} must be text"
        if item.get("lateral") is not None and not isinstance(item["lateral"], bool):
            return f"vocabulary[{n}] ('{item['name']}'): lateral must be true or false"
    return None


def read_card(directory: PathLike) -> Dict[str, Any]:
    """Read and validate ``model.json`` (fields and format version); raises BundleError."""
    directory = Path(directory)
    if not directory.is_dir():
        raise BundleError(f"model bundle {directory} does not exist or is not a folder")
    path = directory / CARD_FILE
    if not path.is_file():
        raise BundleError(f"model bundle {directory} has no {CARD_FILE}; it is not a TextSegment model")
    try:
        with open(path, encoding="utf-8") as fh:
            card = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path} is not valid JSON ({exc}); the bundle is corrupt, download it again") from exc
    except RecursionError:
        raise BundleError(f"{path} is nested too deeply to be a model card; the bundle is corrupt") from None
    except OSError as exc:
        raise BundleError(f"{path} cannot be read ({exc.strerror or exc})") from exc
    if not isinstance(card, dict):
        raise BundleError(f"{path} must hold a JSON object")
    missing = [f for f in REQUIRED_CARD_FIELDS if f not in card]
    if missing:
        raise BundleError(f"{path} lacks the fields {missing}; the bundle is incomplete")
    wrong = [
        f"{key} must be {kind.__name__.replace('dict', 'an object').replace('list', 'a list').replace('str', 'text')}"
        for key, kind in CARD_FIELD_TYPES.items()
        if key in card and (card[key] is not None or key in REQUIRED_CARD_FIELDS) and not isinstance(card[key], kind)
    ]
    if wrong:
        raise BundleError(f"{path}: {'; '.join(wrong)}; the model card is damaged or hand-edited wrongly")
    problem = _input_problem(card["input"]) or _vocabulary_problem(card["vocabulary"])
    if problem:
        raise BundleError(f"{path}: {problem}; the model card is damaged or hand-edited wrongly")
    encoder = card["text_encoder"]
    problem = text_encoder_problem(encoder.get("package"), encoder.get("path"), directory)
    if problem:
        raise BundleError(f"{path}: {problem}; the model was not used (nothing was imported)")
    version = card["format_version"]
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise BundleError(f"{path}: unknown bundle format version {version!r}")
    if version > FORMAT_VERSION:
        raise BundleError(
            f"model bundle format {version} is newer than this TextSegment supports (up to {FORMAT_VERSION}); "
            f"update the TextSegment extension to a release that reads format {version}"
        )
    return card


def config_from_card(card: Dict[str, Any]) -> ModelConfig:
    """The architecture config recorded in a card (BundleError if inconsistent)."""
    arch = dict(card["architecture"])
    text = {k: v for k, v in card["text_encoder"].items() if k in ("package", "path", "name", "dim", "max_tokens")}
    text["revision"] = card["text_encoder"].get("revision")
    arch["text"] = text
    try:
        config = ModelConfig.from_dict(arch)
        numbers = [config.image_size, config.embed_dim, config.in_chans, config.window_size, config.decoder_depth,
                   config.decoder_heads, config.decoder_mlp_dim, config.attention_downsample, config.text.dim,
                   config.text.max_tokens]  # fmt: skip
        numbers += list(config.encoder_dims) + list(config.encoder_depths) + list(config.encoder_heads)
        if any(isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 1 << 16 for v in numbers):
            raise ValueError("its sizes must be whole numbers from 1 to 65536")
        detail = config.detail_channels
        if isinstance(detail, bool) or not isinstance(detail, int) or not 0 <= detail <= 1 << 16:
            raise ValueError(f"detail_channels {detail!r} must be a whole number from 0 to 65536")
        if not isinstance(config.mlp_ratio, (int, float)) or not 0 < float(config.mlp_ratio) <= 64:
            raise ValueError(f"mlp_ratio {config.mlp_ratio!r} must be a number from 0 to 64")
        return config
    except (TypeError, ValueError, ZeroDivisionError, AttributeError) as exc:
        raise BundleError(f"model card architecture is invalid: {exc}") from exc


def check_bundle(directory: PathLike) -> Dict[str, Any]:
    """Check a bundle completely without building the model; returns its card. Raises BundleError."""
    from safetensors import safe_open

    directory = Path(directory)
    card = read_card(directory)
    config = config_from_card(card)
    try:
        resolve_text_encoder_path(config.text, directory)
    except TextEncoderUnavailable as exc:
        raise BundleError(f"model '{card.get('name')}' needs a text encoder that is missing: {exc}") from exc
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise BundleError(f"model bundle {directory} has no {WEIGHTS_FILE}")
    expected_hash = card.get("weights_sha256")
    if expected_hash and sha256_file(weights) != expected_hash:
        raise BundleError(f"{weights} does not match the SHA-256 in its card: the file is corrupt, download it again")
    try:
        with torch.device("meta"):
            reference = build_model(config)
    except Exception as exc:  # noqa: BLE001 - a hand-edited architecture: torch's own errors, whatever their type
        raise BundleError(f"model card architecture cannot be built ({type(exc).__name__}: {exc})") from exc
    expected = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    try:
        with safe_open(str(weights), framework="pt") as fh:
            found = {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}
    except Exception as exc:  # safetensors raises several types for damaged files
        raise BundleError(f"{weights} cannot be read ({exc}); the file is corrupt, download it again") from exc
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    if missing or unexpected:
        raise BundleError(
            f"{weights} does not fit the architecture in its card: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    wrong = [f"{k}: {found[k]} != {expected[k]}" for k in expected if found[k] != expected[k]]
    if wrong:
        raise BundleError(f"{weights} has tensors of the wrong shape: {wrong[:5]}")
    _check_finite(weights, card)
    return card


def _check_finite(weights: Path, card: Dict[str, Any]) -> None:
    """Refuse weights holding NaN or infinite numbers: the model would find nothing anywhere, silently."""
    from safetensors import safe_open

    bad = []
    with safe_open(str(weights), framework="pt") as fh:
        for key in fh.keys():
            tensor = fh.get_tensor(key)
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                bad.append(key)
    if bad:
        raise BundleError(
            f"model '{card.get('name')}' is broken: its weights {weights} hold NaN or infinite numbers (in {len(bad)} "
            f"tensors, e.g. {bad[0]}); it cannot segment anything. Install or export the model again"
        )


def load_bundle(directory: PathLike, device: Union[str, torch.device] = "cpu") -> TextSegmentModel:
    """Check and load a bundle; returns the model in eval mode on ``device`` with ``model.card`` set.

    Raises :class:`BundleError` (nothing is built) when any check fails.
    """
    from safetensors.torch import load_file

    directory = Path(directory)
    card = check_bundle(directory)
    state = load_file(str(directory / WEIGHTS_FILE))
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
    model = build_model(config_from_card(card), text_base_dir=directory)
    model.load_state_dict(state, strict=True)
    model.card = card
    model.bundle_dir = directory
    return model.to(resolve_device(device)).eval()
