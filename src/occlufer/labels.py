"""Canonical expression labels: ``CLASSES`` (FER2013's seven), ``LABELS`` (plus CK+'s and
FER+'s ``contempt``; ``acquire.classes`` picks a subset); :func:`canonical` maps spellings."""

CLASSES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
LABELS: tuple[str, ...] = (*CLASSES, "contempt")

# FER2013 ``emotion`` codes in fer2013.csv, 0-6
FER2013_CODES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

# Dataset spellings (lower case, '-' and ' ' read as '_') → canonical label.
ALIASES: dict[str, str] = {
    "anger": "angry", "angry": "angry",
    "disgust": "disgust", "disgusted": "disgust", "disgusting": "disgust",
    "fear": "fear", "fearful": "fear", "afraid": "fear", "scared": "fear",
    "happy": "happy", "happiness": "happy",
    "neutral": "neutral", "neutrality": "neutral",
    "sad": "sad", "sadness": "sad",
    "surprise": "surprise", "surprised": "surprise",
    "contempt": "contempt", "contemptuous": "contempt",
}


def canonical(name: str) -> str | None:
    """The canonical label for a dataset's class name, or None when it is not known."""
    return ALIASES.get(name.strip().lower().replace("-", "_").replace(" ", "_"))
