"""The diagnostic classes: HAM10000's seven codes, the extra codes other sources need, the malignant view.

Every source maps its labels onto HAM10000's seven codes where it can (``AK`` -> ``akiec``,
``NV`` -> ``nv``, ...). A source whose taxonomy differs declares its own class list in the
dataset registry (ISIC 2019 / BCN20000 add ``scc``; ISIC 2020 is ``benign`` / ``malignant``).
The binary malignant view is defined for every source: the classes in :data:`MALIGNANT_CODES`.
"""

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
    "scc": "squamous cell carcinoma",
    "benign": "benign (any benign diagnosis)",
    "malignant": "malignant (any malignant diagnosis)",
}

#: The binary "malignant" view of HAM10000's taxonomy: mel + bcc + akiec.
MALIGNANT: tuple[str, ...] = ("akiec", "bcc", "mel")
#: Every class code that counts as malignant, whatever the source's class list.
MALIGNANT_CODES: tuple[str, ...] = ("akiec", "bcc", "mel", "scc", "malignant")

#: Spellings used by the published sources (upper-case codes, long names), lower-cased -> code.
LABEL_SYNONYMS: dict[str, str] = {
    "ak": "akiec", "actinic keratosis": "akiec", "actinic keratoses": "akiec", "akiec": "akiec",
    "bcc": "bcc", "basal cell carcinoma": "bcc",
    "bkl": "bkl", "benign keratosis": "bkl", "seborrheic keratosis": "bkl", "solar lentigo": "bkl",
    "lentigo nos": "bkl", "lichenoid keratosis": "bkl", "benign keratosis-like lesion": "bkl",
    "df": "df", "dermatofibroma": "df",
    "mel": "mel", "melanoma": "mel",
    "nv": "nv", "nevus": "nv", "naevus": "nv", "melanocytic nevus": "nv", "melanocytic naevus": "nv",
    "scc": "scc", "squamous cell carcinoma": "scc",
    "vasc": "vasc", "vascular lesion": "vasc",
}

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


def malignant_classes(classes) -> list[str]:
    """The classes of ``classes`` that form the malignant side of the binary view."""
    return [c for c in classes if c in MALIGNANT_CODES]


def probability_columns(classes: tuple[str, ...] | list[str]) -> list[str]:
    """Column names of the predictions contract, in class order."""
    return [f"p_{c}" for c in classes]


#: The 3-level triage view (research illustration, not a clinical pathway). Each diagnosis maps to the
#: action a dermatology service would typically take for it:
#:   high     melanoma (and a source's generic ``malignant``): urgent referral;
#:   moderate basal cell carcinoma, actinic keratosis / intraepithelial carcinoma, squamous cell
#:            carcinoma: malignant or pre-malignant but slow, routine referral / treatment;
#:   low      naevus, benign keratosis, dermatofibroma, vascular lesion (and ``benign``): reassurance.
TRIAGE_LEVELS: tuple[str, ...] = ("low", "moderate", "high")
TRIAGE: dict[str, str] = {
    "mel": "high", "malignant": "high",
    "bcc": "moderate", "akiec": "moderate", "scc": "moderate",
    "nv": "low", "bkl": "low", "df": "low", "vasc": "low", "benign": "low",
}


def triage_level(code: str) -> str:
    """The triage level of a class code; an unmapped code is an error (never a silent 'low')."""
    if code not in TRIAGE:
        raise KeyError(f"class {code!r} has no triage level; add it to taxonomy.TRIAGE")
    return TRIAGE[code]
