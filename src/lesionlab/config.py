"""params.yaml: the single source of every knob, validated before any work is done.

Unknown keys, wrong types and out-of-range values fail at load time with the
dotted key (``variants.cnn_aug.augmnt``) and, for typos, the closest valid name.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, ValidationInfo, field_validator, model_validator

from lesionlab.data.taxonomy import HAM10000_CLASSES, HAM10000_PRIORS
from lesionlab.models import families
from lesionlab.params_base import PARAMS_FILE, ParamsError, overrides_of, registered_backbone  # noqa: F401
from lesionlab.params_base import Section as _Section


def replicate_name(row: str, seed: int) -> str:
    """A seed replicate's run name, ``<row>.seed<N>`` (a dot never appears in a params.yaml row name, so the two
    cannot clash); its outputs live where any row's do (results/<ds>/variants/<row>.seed<N>, metrics/, history/)."""
    return f"{row}.seed{int(seed)}"


def prune_parents(raw: dict) -> dict:
    """For a caller that keeps a subset of params.yaml's rows (a test fixture, the GPU check): drop each ``parent:``
    that names a row no longer defined, which validation would otherwise refuse. Returns ``raw``, changed."""
    sections = [f.section for f in families.FAMILIES.values()]
    rows = {n for s in sections for n in (raw.get(s) or {})}
    for section in sections:
        for row in (raw.get(section) or {}).values():
            if isinstance(row, dict) and row.get("parent") is not None and row["parent"] not in rows:
                row.pop("parent")
    return raw


class BaseParams(_Section):
    seed: int = Field(42, ge=0, description="seed shared by every stage (data, split, bootstrap, first training run)")
    replicate_seeds: list[int] = Field(
        default_factory=lambda: [43, 44],
        description="further training runs of every neural row (CNN ladder, probes, fine-tunes), one per seed",
    )

    @field_validator("replicate_seeds")
    @classmethod
    def _distinct(cls, v: list[int], info: ValidationInfo) -> list[int]:
        if any(s < 0 for s in v) or len(set(v)) != len(v):
            raise ValueError(f"replicate_seeds must be distinct seeds >= 0, got {v}")
        if info.data.get("seed") in v:
            raise ValueError(f"replicate_seeds {v} repeats base.seed {info.data['seed']} (its run is the first one)")
        return v

    @property
    def training_seeds(self) -> list[int]:
        """Every training run's seed, the first run's (``seed``) first."""
        return [self.seed, *self.replicate_seeds]


class ComputeParams(_Section):
    """How the networks run (lesionlab.models.compute); every run records what this resolved to."""

    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when PyTorch sees a GPU")
    precision: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="auto: bfloat16 autocast where the device computes it natively, else float32"
    )
    channels_last: bool = Field(True, description="NHWC memory layout for the PyTorch convolutions")
    keras_backend: Literal["tensorflow", "torch"] = Field(
        "tensorflow", description="Keras 3's backend for the CNN ladder and the Keras backbones"
    )
    keras_threads: int = Field(
        1,
        ge=0,
        le=512,
        description="CPU threads of each Keras run (TensorFlow's intra- and inter-op pools, or PyTorch's); a fixed "
        "number keeps a trained CNN's numbers independent of the machine's core count; 0 = the framework's "
        "default (one per core)",
    )


class SyntheticParams(_Section):
    n_lesions: int = Field(1000, ge=14)
    width: int = Field(160, ge=32, le=1024)
    height: int = Field(120, ge=32, le=1024)
    priors: dict[str, float] = Field(default_factory=lambda: {c: round(p, 4) for c, p in HAM10000_PRIORS.items()})
    views_per_lesion: list[float] = Field(default_factory=lambda: [0.72, 0.18, 0.07, 0.03], min_length=1)
    mimic_rate: float = Field(0.12, ge=0, le=1)
    hair_rate: float = Field(0.35, ge=0, le=1)
    missing_rate: float = Field(0.01, ge=0, le=1)
    jpeg_quality: int = Field(92, ge=1, le=100)

    @field_validator("priors")
    @classmethod
    def _known_classes(cls, v: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(v) - set(HAM10000_CLASSES))
        missing = sorted(set(HAM10000_CLASSES) - set(v))
        if unknown or missing:
            raise ValueError(
                f"classes must be exactly {list(HAM10000_CLASSES)} (unknown: {unknown}, missing: {missing})"
            )
        if any(p <= 0 for p in v.values()):
            raise ValueError("every prior must be > 0")
        return v

    @field_validator("views_per_lesion")
    @classmethod
    def _probabilities(cls, v: list[float]) -> list[float]:
        if any(p < 0 for p in v) or sum(v) <= 0:
            raise ValueError("must be non-negative probabilities of 1, 2, 3, ... views with a positive sum")
        return v


class PrepareParams(_Section):
    image_size: int = Field(48, ge=16, le=512, description="side of the square uint8 image cache")
    backbone_image_size: int = Field(96, ge=32, le=512, description="side of the second cache, for backbones")
    on_bad: Literal["error", "skip"] = Field("error", description="unusable rows: stop the run, or drop and list them")
    min_image_side: int = Field(
        16,
        ge=1,
        le=4096,
        description="an image whose shorter side is below this (px) is an "
        "unusable row (prepare) or skipped and listed (predict): upscaling a thumbnail "
        "invents the detail a model reads; DermaMNIST's 28-px images pass the default",
    )
    color_constancy: Literal["none", "shades_of_gray"] = Field(
        "none", description="per-image colour constancy before resizing (Shades of Gray, p = 6)"
    )
    resize: Literal["squash", "crop", "pad"] = Field(
        "squash", description="W x H -> S x S: squash (aspect changed), crop (centred square) or pad (letterbox)"
    )


class SplitParams(_Section):
    method: Literal["lesion_grouped", "predefined"] = "lesion_grouped"
    val_fraction: float = Field(0.15, gt=0, lt=0.5)
    test_fraction: float = Field(0.2, gt=0, lt=0.5)
    on_rare: Literal["warn", "error"] = Field(
        "warn",
        description="a class with fewer lesions than splits: warn on the split page, or stop with an error naming it",
    )


class AugmentParams(_Section):
    flip: bool = True
    rotation: float = Field(0.5, ge=0, le=1, description="max rotation as a fraction of a full turn")
    zoom: float = Field(0.05, ge=0, lt=1)
    translate: float = Field(0.0, ge=0, lt=0.5)
    brightness: float = Field(0.05, ge=0, lt=1)
    contrast: float = Field(0.05, ge=0, lt=1)


class EmbedParams(_Section):
    """Frozen feature extractors for linear probes: one ``embed@<backbone>`` stage each."""

    backbones: list[str] = Field(default_factory=lambda: ["efficientnet_lite0"])
    weights: Literal["imagenet", "random"] = "imagenet"
    batch_size: int = Field(32, ge=1)

    @field_validator("backbones")
    @classmethod
    def _registered(cls, v: list[str]) -> list[str]:
        return [registered_backbone(b) for b in v]


class UncertaintyParams(_Section):
    """When a prediction is flagged 'uncertain' (abstention): either condition suffices."""

    max_prob_below: float = Field(0.5, ge=0, le=1, description="flag when the top probability is below this")
    entropy_above: float = Field(0.6, ge=0, le=1, description="flag when entropy / log(k) is above this")
    calibrated: bool = Field(True, description="apply the variant's validation temperature before flagging")


class ExplainParams(_Section):
    """Grad-CAM of the image models (stage ``explain``, one page), scored against the lesion masks."""

    variants: list[str] = Field(default_factory=list, description="image models to explain (CNNs, probes, fine-tunes)")
    panels_per_class: int = Field(3, ge=1, le=10, description="correct and incorrect test cases shown per class")
    batch_size: int = Field(64, ge=1)

    @field_validator("variants")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"a variant is listed twice: {v}")
        return v


class CompareParams(_Section):
    baseline: str = "cnn_baseline"
    bootstrap: int = Field(1000, ge=10, description="bootstrap resamples (by lesion) for the CIs")
    ci: float = Field(0.95, gt=0.5, lt=1)
    pairs: list[list[str]] = Field(
        default_factory=list, description="[a, b] pairs shown as paired bootstrap CIs of a - b"
    )
    age_bands: list[float] = Field(
        default_factory=lambda: [30, 45, 60, 75], description="subgroup slices: upper edges of the age bands (years)"
    )
    min_slice_lesions: int = Field(30, ge=1, description="slices with fewer lesions are marked 'too small'")
    min_slice_malignant: int = Field(10, ge=1, description="... or with fewer malignant images (AUC, sensitivity)")

    @field_validator("age_bands")
    @classmethod
    def _increasing(cls, v: list[float]) -> list[float]:
        if any(b <= a for a, b in zip(v, v[1:])):
            raise ValueError(f"age_bands must increase strictly, got {v}")
        return v

    @field_validator("pairs")
    @classmethod
    def _two(cls, v: list[list[str]]) -> list[list[str]]:
        for pair in v:
            if len(pair) != 2 or pair[0] == pair[1]:
                raise ValueError(f"each pair must name two different rows, got {pair}")
        return v


class CoreParams(_Section):
    """The sections every project has; :data:`Params` adds each registered model family's two sections (its
    defaults and its rows, :mod:`lesionlab.models.families`)."""

    dataset: str = "synthetic"
    dataset_source: str = "src/lesionlab/data/synthetic.py"
    base: BaseParams = BaseParams()
    compute: ComputeParams = ComputeParams()
    synthetic: SyntheticParams = SyntheticParams()
    prepare: PrepareParams = PrepareParams()
    split: SplitParams = SplitParams()
    augment: AugmentParams = AugmentParams()
    embed: EmbedParams = EmbedParams()
    uncertainty: UncertaintyParams = UncertaintyParams()
    explain: ExplainParams = ExplainParams()
    compare: CompareParams = CompareParams()
    #: external test sets: every trained model and ensemble also scores these datasets (never trained on)
    external: list[str] = Field(default_factory=list)

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, v: str, info: ValidationInfo) -> str:
        from lesionlab.data.datasets import DatasetError, dataset_info

        try:
            dataset_info(v, (info.context or {}).get("root"))
        except DatasetError as err:
            raise ValueError(str(err)) from None
        return v

    @model_validator(mode="after")
    def _cross_checks(self, context: ValidationInfo) -> CoreParams:
        from lesionlab.data.datasets import DATASETS, dataset_info

        info = dataset_info(self.dataset, (context.context or {}).get("root"))
        if self.dataset_source != info.source:
            raise ValueError(
                f"dataset_source must be {info.source!r} for dataset {self.dataset!r} (got "
                f"{self.dataset_source!r}): it is the path dvc.yaml's prepare stage depends on. "
                f"Switch both: dvc exp run -S dataset={self.dataset} -S dataset_source={info.source}"
            )
        if self.split.method == "predefined" and not info.has_split:
            raise ValueError(
                f"split.method: predefined needs a source with its own split; {self.dataset!r} has none "
                f"(sources with one: {[n for n, i in DATASETS.items() if i.has_split]})"
            )
        if len(set(self.external)) != len(self.external):
            raise ValueError(f"external: a dataset is listed twice: {self.external}")
        for name in self.external:
            if name == self.dataset:
                raise ValueError(
                    f"external: {name!r} is the dataset the models train on; an external test set must be another one"
                )
            ext = dataset_info(name, (context.context or {}).get("root"))
            if ext.raw_dir is None:
                raise ValueError(
                    f"external: {name!r} is generated by the project; an external test set is a "
                    "user's download under data/<name>/"
                )
        if self.split.val_fraction + self.split.test_fraction >= 0.8:
            raise ValueError("split.val_fraction + split.test_fraction must leave at least 20 % for training")
        seen: dict[str, str] = {}
        for family in families.FAMILIES.values():
            for name in getattr(self, family.section):
                if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
                    raise ValueError(
                        f"{family.section}.{name}: variant name {name!r} must be lower-case letters, digits and '_'"
                    )
                if name in seen:
                    raise ValueError(
                        f"{family.section}.{name}: the name is already used in {seen[name]} "
                        "(every variant writes results/<dataset>/variants/<name>)"
                    )
                seen[name] = family.section
        self._check_parents()
        names = self.all_variants()
        if self.compare.baseline not in names:
            raise ValueError(f"compare.baseline {self.compare.baseline!r} is not one of the variants {names}")
        for family in families.FAMILIES.values():
            if family.validate is not None:
                family.validate(self)
        rows = self.scored_rows()
        images = self.image_variants()
        unknown = [v for v in self.explain.variants if v not in images]
        if unknown:
            raise ValueError(
                f"explain.variants: {unknown} is not an image model of this params.yaml; Grad-CAM explains {images}"
            )
        for pair in self.compare.pairs:
            unknown = [m for m in pair if m not in rows + list(self.ensembles)]
            if unknown:
                raise ValueError(
                    f"compare.pairs: {unknown} is not a leaderboard row; rows: {rows + list(self.ensembles)}"
                )
        return self

    def all_rows(self) -> list[str]:
        """Every row of every family's section, in params.yaml order (ensembles and metadata models included)."""
        return [n for f in families.FAMILIES.values() for n in self._rows(f)]

    def _check_parents(self) -> None:
        """Each ``parent:`` names another leaderboard row, and following parents never comes back to a row."""
        rows = self.all_rows()
        parent = {n: self.parent(n) for n in rows}
        for name, p in parent.items():
            if p is None:
                continue
            if p not in rows:
                close = difflib.get_close_matches(p, rows, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"{self.section_of(name)}.{name}.parent: {p!r} is not a row{hint}; rows: {rows}")
            seen, at = {name}, p
            while at is not None:
                if at in seen:
                    raise ValueError(f"{self.section_of(name)}.{name}.parent: the parents of {name!r} form a cycle")
                seen.add(at)
                at = parent.get(at)

    def section_of(self, name: str) -> str:
        return families.of_row(self, name).section

    def parent(self, name: str) -> str | None:
        """The ``parent:`` rung of a row (None: a row the ablation starts from, or no row of params.yaml)."""
        try:
            return getattr(self, self.section_of(name))[name].parent
        except KeyError:
            return None

    def _rows(self, family) -> list[str]:
        return list(getattr(self, family.section))

    def all_variants(self) -> list[str]:
        """Every trained model the comparison reads: CNN ladder, probes, fine-tunes, tabular (params.yaml order)."""
        return [n for f in families.FAMILIES.values() if f.outputs == "variants" for n in self._rows(f)]

    def image_variants(self) -> list[str]:
        """The models that look at pixels (CNN ladder, probes, fine-tunes): what Grad-CAM can explain."""
        return [
            n for f in families.FAMILIES.values() if f.outputs == "variants" and f.image_model for n in self._rows(f)
        ]

    def scored_rows(self) -> list[str]:
        """Every model row an ensemble may combine: each trained model, plus ``<name>+tta`` where TTA is on."""
        rows = []
        for family in families.FAMILIES.values():
            if family.outputs != "variants":
                continue
            for name in self._rows(family):
                rows.append(name)
                if family.tta is not None and family.tta(family.config(self, name)):
                    rows.append(name + "+tta")
        return rows

    def row_config(self, name: str, *kinds: str):
        """The effective config of a row (its family's defaults + its overrides); ``kinds`` limits the families."""
        for family in families.FAMILIES.values():
            if (not kinds or family.kind in kinds) and name in getattr(self, family.section):
                return family.config(self, name)
        sections = [f.section for f in families.FAMILIES.values() if not kinds or f.kind in kinds]
        raise ParamsError(
            f"{PARAMS_FILE}: unknown {' or '.join(kinds) or 'row'} {name!r}; "
            + ", ".join(f"{s}: {list(getattr(self, s))}" for s in sections)
        )

    def tabular_variant(self, name: str):
        """The effective config of a metadata model: ``tabular`` defaults + its overrides."""
        if name not in self.tabulars:
            raise ParamsError(f"{PARAMS_FILE}: unknown tabular model {name!r}; tabulars: {list(self.tabulars)}")
        return self.row_config(name, "tabular")

    def ensemble_config(self, name: str):
        """The effective config of an ensemble: ``ensemble`` defaults + its members and overrides."""
        if name not in self.ensembles:
            raise ParamsError(f"{PARAMS_FILE}: unknown ensemble {name!r}; ensembles: {list(self.ensembles)}")
        return self.row_config(name, "ensemble")

    def backbone_variant(self, name: str):
        """The effective config of a probe or fine-tune variant: its section's defaults + its overrides."""
        if name not in self.probes and name not in self.finetunes:
            raise ParamsError(
                f"{PARAMS_FILE}: unknown backbone variant {name!r}; probes: {list(self.probes)}, "
                f"finetunes: {list(self.finetunes)}"
            )
        return self.row_config(name, "probe", "finetune")

    def description(self, name: str) -> str:
        for family in families.FAMILIES.values():
            if name in getattr(self, family.section):
                return getattr(self, family.section)[name].description
        return ""

    def preprocess(self, name: str | None = None):
        """The image preprocessing of a CNN-ladder variant (its own ``color_constancy`` / ``resize``, else prepare's),
        or prepare's for any other row (``name`` None)."""
        from lesionlab.data.preprocess import Preprocess

        cc, resize = self.prepare.color_constancy, self.prepare.resize
        if name in self.variants:
            cfg = self.variant(name)
            cc, resize = cfg.color_constancy or cc, cfg.resize or resize
        return Preprocess(cc, resize)

    def preprocessing_pairs(self) -> list[list[str]]:
        """[ablation, twin]: CNN-ladder variants that differ from another only by their image preprocessing."""

        def bare(name):
            return self.variant(name).model_copy(update={"color_constancy": None, "resize": None})

        out = []
        for a in self.variants:
            if self.preprocess(a) == self.preprocess():
                continue
            twins = [
                b for b in self.variants if b != a and self.preprocess(b) == self.preprocess() and bare(b) == bare(a)
            ]
            out.extend([a, b] for b in twins[:1])
        return out

    def replicated_rows(self) -> list[str]:
        """The rows trained once per seed of ``base.training_seeds``: the neural families (CNN ladder, probes,
        fine-tunes); metadata models and ensembles have no training randomness worth a replicate."""
        return [n for f in families.FAMILIES.values() if f.replicated for n in self._rows(f)]

    def replicates(self, row: str) -> list[str]:
        """The run names of a leaderboard row, first run first: ``[row, row.seed43, ...]`` for a replicated row
        (``+tta`` rows: ``[x+tta, x.seed43+tta, ...]``), ``[row]`` for any other."""
        base, suffix = (row[: -len("+tta")], "+tta") if row.endswith("+tta") else (row, "")
        if base not in self.replicated_rows():
            return [row]
        return [row] + [replicate_name(base, s) + suffix for s in self.base.replicate_seeds]

    def replicate(self, row: str, seed: int | None) -> tuple[Params, str]:
        """(params, run name) of the run of ``row`` with training seed ``seed``: for the first run (``seed`` None
        or base.seed) this params and ``row``; else a copy whose ``base.seed`` is ``seed`` and whose row section
        also holds ``row.seed<seed>`` with the row's own settings, so that the row's trainer, unchanged, trains
        it with that seed and writes its outputs under the replicate's name."""
        if seed is None or seed == self.base.seed:
            return self, row
        family = families.of_row(self, row) if row in self.all_rows() else None
        if family is None or not family.replicated:
            raise ParamsError(
                f"{PARAMS_FILE}: {row!r} is not a row trained per seed; replicated rows: {self.replicated_rows()}"
            )
        if seed not in self.base.replicate_seeds:
            raise ParamsError(f"{PARAMS_FILE}: seed {seed} is not in base.replicate_seeds {self.base.replicate_seeds}")
        name = replicate_name(row, seed)
        section = dict(getattr(self, family.section))
        section[name] = section[row]
        update = {family.section: section, "base": self.base.model_copy(update={"seed": seed})}
        return self.model_copy(update=update), name

    def variant(self, name: str):
        """The effective training config of a variant: ``train`` defaults + the variant's overrides."""
        if name not in self.variants:
            raise ParamsError(f"{PARAMS_FILE}: unknown variant {name!r}; defined: {list(self.variants)}")
        return self.row_config(name, "cnn")


def _assemble() -> type[BaseModel]:
    """``Params``: the core sections + each registered family's defaults section and rows section."""
    from pydantic import create_model

    fields: dict[str, Any] = {}
    for family in families.discover().values():
        factory = family.defaults_factory or family.defaults_model
        fields[family.defaults] = (family.defaults_model, Field(default_factory=factory))
        rows = dict[str, family.row_model]
        fields[family.section] = (rows, Field(min_length=1) if family.required else Field(default_factory=dict))
    return create_model("Params", __base__=CoreParams, __doc__="params.yaml, validated.", **fields)


Params = _assemble()

#: the sections of params.yaml that name leaderboard rows (names are unique across all of them)
SECTIONS = tuple(f.section for f in families.FAMILIES.values())

# the families' section models, where callers have always found them
from lesionlab.models.families._backbone import STRATEGIES, BackboneParams, BackboneVariantParams  # noqa: E402, F401
from lesionlab.models.families.cnn import TrainParams, VariantParams  # noqa: E402, F401
from lesionlab.models.families.ensemble import EnsembleConfig, EnsembleParams, EnsembleVariantParams  # noqa: E402, F401
from lesionlab.models.families.probe import probe_defaults as _probe_defaults  # noqa: E402, F401
from lesionlab.models.families.tabular import TabularParams, TabularVariantParams  # noqa: E402, F401

# --- loading -----------------------------------------------------------------------------


def find_project_root(start: str | Path | None = None) -> Path:
    """The folder holding params.yaml and dvc.yaml: $LESIONLAB_ROOT, else the first parent of ``start``/cwd."""
    if os.environ.get("LESIONLAB_ROOT"):
        return Path(os.environ["LESIONLAB_ROOT"]).resolve()
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / PARAMS_FILE).is_file() and (folder / "dvc.yaml").is_file():
            return folder
    raise FileNotFoundError(f"no {PARAMS_FILE} + dvc.yaml found in {here} or its parents; set LESIONLAB_ROOT")


def _model_for(loc: tuple) -> type[BaseModel] | None:
    """The pydantic model that owns the key at ``loc`` (to suggest close names for typos)."""
    rows = {f.section: f.row_model for f in families.FAMILIES.values()}
    model: Any = Params
    for part in loc[:-1]:
        if model is Params and part in rows:
            model = part
            continue
        if model in rows:
            model = rows[model]
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None or not isinstance(field.annotation, type) or not issubclass(field.annotation, BaseModel):
            return None
        model = field.annotation
    return model if isinstance(model, type) else None


def _format_errors(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"])
        key = ".".join(str(p) for p in loc) or "<top level>"
        if e["type"] == "extra_forbidden":
            model = _model_for(loc)
            hint = ""
            if model is not None:
                close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else f" (valid keys: {', '.join(model.model_fields)})"
            lines.append(f"{source}: {key}: unknown key{hint}")
        else:
            got = e.get("input")
            shown = "" if isinstance(got, dict) else f" (got {got!r})"
            lines.append(f"{source}: {key}: {e['msg']}{shown}")
    return "invalid parameters:\n  " + "\n  ".join(lines)


def parse_params(raw: Any, source: str = PARAMS_FILE, root: str | Path | None = None) -> Params:
    """Validate an already-loaded mapping; ``root`` (the project root) is where dataset cards are looked up."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
    if root is None:
        try:
            root = find_project_root()
        except FileNotFoundError:
            root = None
    try:
        return Params.model_validate(raw, context={"root": root})
    except ValidationError as err:
        raise ParamsError(_format_errors(err, source)) from None


class YamlError(ValueError):
    """A YAML file DVC would not read as written (syntax, a duplicate key)."""


def read_yaml(text: str, source: str):
    """YAML read exactly as DVC reads params.yaml (ruamel.yaml, safe, YAML 1.2): ``1e-3`` is the float 0.001,
    ``on`` / ``yes`` are strings, and a key given twice is an error, not 'the last one wins'. Shared by params.yaml
    and dataset cards, so `check-params`, every stage and DVC see the same values."""
    from ruamel.yaml import YAML
    from ruamel.yaml.constructor import DuplicateKeyError
    from ruamel.yaml.error import YAMLError

    try:
        return YAML(typ="safe").load(text)
    except DuplicateKeyError as err:
        line = err.problem_mark.line + 1 if err.problem_mark else "?"
        raise YamlError(
            f"{source}, line {line}: {err.problem} (DVC refuses a mapping with a repeated key, where "
            "a plain YAML reader would silently keep the last one): keep one"
        ) from None
    except YAMLError as err:
        raise YamlError(f"{source}: not valid YAML: {err}") from None


def load_params(path: str | Path | None = None) -> Params:
    """Read (:func:`read_yaml`, as DVC reads it) and validate params.yaml (default: the project root's)."""
    path = Path(path) if path else find_project_root() / PARAMS_FILE
    try:
        raw = read_yaml(path.read_text(), str(path))
    except FileNotFoundError:
        raise ParamsError(f"{path}: file not found") from None
    except YamlError as err:
        raise ParamsError(str(err)) from None
    return parse_params(raw, source=str(path), root=path.resolve().parent)
