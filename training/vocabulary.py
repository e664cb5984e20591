"""Structures to train on: names, synonyms, laterality, region, CT window, and where their masks come from.

A structure is a set of values in one label *layer* of a case (e.g. AAL values 37 and 38 for "hippocampus").
Config entries (``prepare.structures``) are either a whole names table mapped to English (``table``) or one
structure (``name`` with ``values`` or a regular expression ``match`` over the table's names).
"""

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import yaml

PROMPTS_DIR = Path(__file__).resolve().parent / "prompts"
SIDES = ("left", "right")
_SIDE_PATTERNS = [
    (re.compile(r"^(?P<base>.+?)[_ -](?P<side>[LR])$"), {"L": "left", "R": "right"}),
    (re.compile(r"^(?P<base>.+?)[_ -](?P<side>left|right)$", re.I), None),
    (re.compile(r"^(?P<side>left|right)[_ -](?P<base>.+)$", re.I), None),
]


@dataclass
class Structure:
    """One promptable target: ``sources`` maps label layers to their values (several datasets may label the same
    structure in different layers); ``partner`` is the contralateral structure's name."""

    name: str
    base: str
    sources: Dict[str, List[int]]
    laterality: str = "none"  # left, right, bilateral, midline or none
    region: str = "unknown"
    ct_window: Optional[str] = None
    synonyms: List[str] = field(default_factory=list)
    partner: Optional[str] = None

    def card_entry(self) -> Dict:
        """The model-card vocabulary entry."""
        return {
            "name": self.name,
            "synonyms": list(self.synonyms),
            "laterality": self.laterality,
            "region": self.region,
            "ct_window": self.ct_window,
        }

    def to_dict(self) -> Dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Dict) -> "Structure":
        return cls(**data)


def split_laterality(raw: str) -> Tuple[str, Optional[str]]:
    """Split a label name into (base, side): ``Hippocampus_L`` -> (Hippocampus, left), ``kidney_right`` -> ..."""
    for pattern, mapping in _SIDE_PATTERNS:
        m = pattern.match(raw.strip())
        if m:
            side = m.group("side")
            side = mapping[side] if mapping else side.lower()
            return m.group("base"), side
    return raw.strip(), None


def read_names_table(path: str) -> Dict[int, str]:
    """Label value -> name from a text table: ``value name [...]`` per line (spaces, tabs or commas)."""
    names: Dict[int, str] = {}
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        parts = [p for p in re.split(r"[\s,;]+", line.strip()) if p]
        if len(parts) >= 2 and parts[0].isdigit() and int(parts[0]) > 0:
            names[int(parts[0])] = parts[1]
    return names


def load_names_map(path: Optional[str]) -> Dict[str, Dict]:
    """Read an English names map (e.g. training/prompts/aal.yaml); relative paths are under training/prompts."""
    if not path:
        return {}
    p = Path(path)
    if not p.is_absolute() and not p.exists():
        p = PROMPTS_DIR / p
    with open(p, encoding="utf-8") as fh:
        return yaml.safe_load(fh) or {}


def sided_synonyms(side: Optional[str], base_names: Iterable[str], abbreviations: Iterable[str]) -> List[str]:
    """Synonyms with the side spelled in a few common ways (``left X``, ``X L``, ``L X``)."""
    out: List[str] = []
    for n in base_names:
        out += [f"{side} {n}", f"{n} {side}"] if side else [n]
    for a in abbreviations:
        out += [f"{a} {side[0].upper()}", f"{a}_{side[0].upper()}", f"{side} {a}"] if side else [a]
    return out


def _make(raw_base, side, layer, values, info, region, window) -> Structure:
    english = info.get("name") or raw_base.replace("_", " ").lower()
    name = f"{side} {english}" if side else english
    synonyms = sided_synonyms(side, [english] + list(info.get("synonyms", [])), info.get("abbreviations", []))
    synonyms = [s for s in dict.fromkeys(synonyms) if s != name]
    laterality = side or info.get("laterality", "none")
    return Structure(name, english, {layer: sorted(values)}, laterality, region, window, synonyms)


def expand_entry(entry: Dict) -> List[Structure]:
    """Structures described by one config entry (see module docstring)."""
    region = entry.get("region", "unknown")
    window = entry.get("ct_window")
    layer = entry["layer"]
    if entry.get("names_table"):
        table = read_names_table(entry["names_table"])
    else:
        table = {int(k): str(v) for k, v in (entry.get("label_names") or {}).items()}
    if entry.get("table"):
        names_map = load_names_map(entry.get("names"))
        out = []
        for value, raw in sorted(table.items()):
            base, side = split_laterality(raw)
            info = names_map.get(base) or names_map.get(base.lower()) or {}
            if base.startswith("Vermis"):
                info = {**info, "laterality": "midline"}
            out.append(
                _make(base, side, layer, [value], info, info.get("region", region), info.get("ct_window", window))
            )
        return out
    values = list(entry.get("values", []))
    if entry.get("match"):
        pattern = re.compile(entry["match"])
        values += [v for v, raw in table.items() if pattern.search(raw)]
    if not values:
        raise ValueError(f"structure {entry.get('name')!r} selects no label values")
    info = {
        "name": entry["name"],
        "synonyms": entry.get("synonyms", []),
        "abbreviations": entry.get("abbreviations", []),
    }
    side = entry.get("laterality") if entry.get("laterality") in SIDES else None
    st = _make(entry["name"], None, layer, values, info, region, window)
    st.laterality = entry.get("laterality", "none")
    if side and not st.name.startswith(side):
        st.name = f"{side} {st.name}"
    return [st]


def build_structures(entries: List[Dict]) -> List[Structure]:
    """All structures of a config, merged by name (their sources joined), with left/right partners linked."""
    by_name: Dict[str, Structure] = {}
    for entry in entries:
        for st in expand_entry(entry):
            old = by_name.get(st.name)
            if old is None:
                by_name[st.name] = st
                continue
            if old.laterality != st.laterality:
                raise ValueError(f"structure {st.name!r} is defined twice with different laterality")
            for layer, values in st.sources.items():
                old.sources[layer] = sorted(set(old.sources.get(layer, [])) | set(values))
            old.synonyms += [x for x in st.synonyms if x not in old.synonyms]
    structures = list(by_name.values())
    for s in structures:
        if s.laterality in SIDES:
            other = "right" if s.laterality == "left" else "left"
            partner = other + s.name[len(s.laterality) :]
            if partner in by_name:
                s.partner = partner
    return structures
