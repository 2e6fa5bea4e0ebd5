"""The diagnostic classes every dataset maps onto (HAM10000's seven codes)."""

from __future__ import annotations

HAM10000_CLASSES: tuple[str, ...] = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")

CLASS_NAMES: dict[str, str] = {
    "akiec": "actinic keratosis / intraepithelial carcinoma",
    "bcc": "basal cell carcinoma",
    "bkl": "benign keratosis-like lesion",
    "df": "dermatofibroma",
    "mel": "melanoma",
    "nv": "melanocytic naevus",
    "vasc": "vascular lesion",
}

#: The binary "malignant" view used by every report: mel + bcc + akiec.
MALIGNANT: tuple[str, ...] = ("akiec", "bcc", "mel")

#: Class frequencies of the published HAM10000 release (10,015 images).
HAM10000_COUNTS: dict[str, int] = {
    "akiec": 327,
    "bcc": 514,
    "bkl": 1099,
    "df": 115,
    "mel": 1113,
    "nv": 6705,
    "vasc": 142,
}
HAM10000_PRIORS: dict[str, float] = {
    k: v / sum(HAM10000_COUNTS.values()) for k, v in HAM10000_COUNTS.items()
}


def probability_columns(classes: tuple[str, ...] | list[str]) -> list[str]:
    """Column names of the predictions contract, in class order."""
    return [f"p_{c}" for c in classes]
