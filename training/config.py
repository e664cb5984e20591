"""YAML configs of the training folder: one file per model with sections prepare, model, train, evaluate, export."""

from pathlib import Path
from typing import Any, Dict

import yaml


def load_config(path) -> Dict[str, Any]:
    """Read a YAML config; ``extends: other.yaml`` (relative to this file) is merged underneath, section by section."""
    path = Path(path)
    with open(path, encoding="utf-8") as fh:
        cfg = yaml.safe_load(fh) or {}
    base = cfg.pop("extends", None)
    if base:
        parent = load_config(path.parent / base)
        for key, value in cfg.items():
            if isinstance(value, dict) and isinstance(parent.get(key), dict):
                parent[key] = {**parent[key], **value}
            else:
                parent[key] = value
        cfg = parent
    cfg.setdefault("name", path.stem)
    return cfg
