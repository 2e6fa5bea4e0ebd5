"""The diagnostic classes: HAM10000's seven codes, the extra codes other sources need, the malignant view.

Every source maps its labels onto the taxonomy's codes where it can: the built-in spellings
(``AK`` -> ``akiec``, ``NV`` -> ``nv``, :data:`LABEL_SYNONYMS`) plus a dataset's own ``label_map``
(its card, ``data/<name>/dataset.yaml``). A source whose taxonomy differs declares its own class
list (ISIC 2019 / BCN20000 add ``scc``; ISIC 2020 is ``benign`` / ``malignant``; a user's card may
keep any classes of its own). The task views need to know what each class means:

- the **binary** malignant view: the taxonomy's :data:`MALIGNANT_CODES`, or the classes a dataset
  with its own classes declares malignant;
- the **triage** view: :data:`TRIAGE`, or the level a dataset declares for each of its own classes.

A dataset's declarations are recorded in its ``summary.json`` by the prepare stage and made known to
this module by :func:`declare` when a stage loads the prepared data. Without a declaration a view is
not computed (the report says why); it is never guessed.
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
    "ak": "akiec",
    "actinic keratosis": "akiec",
    "actinic keratoses": "akiec",
    "akiec": "akiec",
    "bcc": "bcc",
    "basal cell carcinoma": "bcc",
    "bkl": "bkl",
    "benign keratosis": "bkl",
    "seborrheic keratosis": "bkl",
    "solar lentigo": "bkl",
    "lentigo nos": "bkl",
    "lichenoid keratosis": "bkl",
    "benign keratosis-like lesion": "bkl",
    "df": "df",
    "dermatofibroma": "df",
    "mel": "mel",
    "melanoma": "mel",
    "nv": "nv",
    "nevus": "nv",
    "naevus": "nv",
    "melanocytic nevus": "nv",
    "melanocytic naevus": "nv",
    "scc": "scc",
    "squamous cell carcinoma": "scc",
    "vasc": "vasc",
    "vascular lesion": "vasc",
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
HAM10000_PRIORS: dict[str, float] = {k: v / sum(HAM10000_COUNTS.values()) for k, v in HAM10000_COUNTS.items()}


#: classes a dataset with its own class list declared malignant / their triage level (see :func:`declare`)
_DECLARED_MALIGNANT: set[str] = set()
_DECLARED_TRIAGE: dict[str, str] = {}


def declare(malignant=None, triage: dict | None = None) -> None:
    """Make a dataset's own classes known to the task views: which are malignant, which triage level each has.

    Called with the prepared dataset's ``summary.json`` entries (:func:`lesionlab.data.prepare.load_prepared`).
    Taxonomy codes keep their built-in meaning; a declaration can only add names."""
    _DECLARED_MALIGNANT.clear()
    _DECLARED_TRIAGE.clear()
    _DECLARED_MALIGNANT.update(c for c in (malignant or ()) if c not in TRIAGE)
    for c, level in (triage or {}).items():
        if c in TRIAGE:
            continue
        if level not in TRIAGE_LEVELS:
            raise ValueError(f"triage level of {c!r} must be one of {list(TRIAGE_LEVELS)}, got {level!r}")
        _DECLARED_TRIAGE[c] = level


def is_taxonomy_code(code: str) -> bool:
    """A code of the built-in taxonomy (HAM10000's seven, scc, benign, malignant)."""
    return code in TRIAGE


def malignant_classes(classes) -> list[str]:
    """The classes of ``classes`` that form the malignant side of the binary view."""
    return [c for c in classes if c in MALIGNANT_CODES or c in _DECLARED_MALIGNANT]


def binary_view_reason(classes, malignant_known: bool = True) -> str | None:
    """Why the malignant-vs-benign view cannot be computed for these classes, or None when it can."""
    if not malignant_known:
        return (
            "this dataset keeps its own classes and does not declare which are malignant "
            "(add `malignant: [...]` to its card, data/<name>/dataset.yaml)"
        )
    bad = malignant_classes(classes)
    if not bad:
        return "none of the classes is malignant"
    if len(bad) == len(list(classes)):
        return "every class is malignant"
    return None


def triage_view_reason(classes) -> str | None:
    """Why the 3-level triage view cannot be computed for these classes, or None when it can."""
    missing = [c for c in classes if c not in TRIAGE and c not in _DECLARED_TRIAGE]
    if missing:
        return (
            f"no triage level for {missing} (a dataset with its own classes declares one per class: "
            "`triage: {class: low|moderate|high}` in its card)"
        )
    levels = sorted({triage_level(c) for c in classes}, key=TRIAGE_LEVELS.index)
    if len(levels) < len(TRIAGE_LEVELS):
        return (
            f"the classes cover only {len(levels)} of the {len(TRIAGE_LEVELS)} triage levels ({', '.join(levels)}): "
            "the view would repeat the malignant-vs-benign one"
        )
    return None


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
    "mel": "high",
    "malignant": "high",
    "bcc": "moderate",
    "akiec": "moderate",
    "scc": "moderate",
    "nv": "low",
    "bkl": "low",
    "df": "low",
    "vasc": "low",
    "benign": "low",
}


def triage_level(code: str) -> str:
    """The triage level of a class code; an unmapped code is an error (never a silent 'low')."""
    if code in TRIAGE:
        return TRIAGE[code]
    if code in _DECLARED_TRIAGE:
        return _DECLARED_TRIAGE[code]
    raise KeyError(
        f"class {code!r} has no triage level; map it onto a taxonomy code (label_map) or declare "
        "`triage:` in the dataset's card"
    )
