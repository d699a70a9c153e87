"""The one canonical label set: the 8 FER+ emotions, in FER+ column order."""

from __future__ import annotations

LABELS: tuple[str, ...] = (
    "neutral",
    "happiness",
    "surprise",
    "sadness",
    "anger",
    "disgust",
    "fear",
    "contempt",
)

# Other vocabularies seen in datasets and third-party models; mapped by name, never position.
_ALIASES = {
    "happy": "happiness",
    "joy": "happiness",
    "sad": "sadness",
    "angry": "anger",
    "disgusted": "disgust",
    "fearful": "fear",
    "scared": "fear",
    "surprised": "surprise",
    "calm": "neutral",
}


def canonical(name: str) -> str:
    """Map a label name from any vocabulary to the canonical one, or raise ValueError."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in LABELS:
        raise ValueError(f"unknown emotion label {name!r}; valid labels: {', '.join(LABELS)}")
    return key


def label_index(name: str) -> int:
    return LABELS.index(canonical(name))
