"""params.yaml: the single source of every knob, validated before any work is done.

Unknown keys, wrong types and out-of-range values fail at load time with the
dotted key (``variants.cnn_aug.augmnt``) and, for typos, the closest valid name.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from lesionlab.taxonomy import HAM10000_CLASSES, HAM10000_PRIORS

PARAMS_FILE = "params.yaml"


#: the sections of params.yaml that name leaderboard rows (names are unique across all of them)
SECTIONS = ("variants", "probes", "finetunes", "tabulars", "ensembles")


class ParamsError(ValueError):
    """params.yaml is malformed; the message names every offending key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class BaseParams(_Section):
    seed: int = Field(42, ge=0, description="seed shared by every stage")


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
            raise ValueError(f"classes must be exactly {list(HAM10000_CLASSES)} (unknown: {unknown}, missing: {missing})")
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
    min_image_side: int = Field(16, ge=1, le=4096, description="an image whose shorter side is below this (px) is an "
                                "unusable row (prepare) or skipped and listed (predict): upscaling a thumbnail "
                                "invents the detail a model reads; DermaMNIST's 28-px images pass the default")
    color_constancy: Literal["none", "shades_of_gray"] = Field(
        "none", description="per-image colour constancy before resizing (Shades of Gray, p = 6)")
    resize: Literal["squash", "crop", "pad"] = Field(
        "squash", description="W x H -> S x S: squash (aspect changed), crop (centred square) or pad (letterbox)")


class SplitParams(_Section):
    method: Literal["lesion_grouped", "predefined"] = "lesion_grouped"
    val_fraction: float = Field(0.15, gt=0, lt=0.5)
    test_fraction: float = Field(0.2, gt=0, lt=0.5)
    on_rare: Literal["warn", "error"] = Field("warn", description="a class with fewer lesions than splits: warn on "
                                              "the split page, or stop with an error naming it")


class AugmentParams(_Section):
    flip: bool = True
    rotation: float = Field(0.5, ge=0, le=1, description="max rotation as a fraction of a full turn")
    zoom: float = Field(0.05, ge=0, lt=1)
    translate: float = Field(0.0, ge=0, lt=0.5)
    brightness: float = Field(0.05, ge=0, lt=1)
    contrast: float = Field(0.05, ge=0, lt=1)


class TrainParams(_Section):
    framework: Literal["keras"] = "keras"
    epochs: int = Field(25, ge=1)
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    patience: int = Field(8, ge=1, description="epochs without a better val balanced accuracy before stopping")
    filters: list[int] = Field(default_factory=lambda: [16, 32, 64], min_length=1)
    dense_units: int = Field(128, ge=1)
    dropout: float = Field(0.3, ge=0, lt=1)
    augment: bool = False
    class_weights: bool = False
    batchnorm: bool = False
    activation: Literal["relu", "elu"] = "relu"
    #: preprocessing ablations: the variant trains (and predicts) on images decoded with these instead of
    #: prepare's (None = as prepare; docs/datasets.md)
    color_constancy: Optional[Literal["none", "shades_of_gray"]] = None
    resize: Optional[Literal["squash", "crop", "pad"]] = None


def overrides_of(defaults: type[BaseModel], name: str, doc: str, **extra) -> type[BaseModel]:
    """The override model of a defaults section, derived rather than restated: a ``description`` plus every field
    of ``defaults``, optional (None: keep the section's default) with the same type and bounds; the defaults'
    validators are inherited (each lets None through). ``extra``: more fields (an ensemble's ``members``)."""
    from pydantic import create_model

    fields: dict[str, Any] = {"description": (str, "")}
    for key, info in defaults.model_fields.items():
        field = Field(None, description=info.description)
        field.metadata.extend(info.metadata)   # ge / le / min_length ...
        fields[key] = (Optional[info.annotation], field)
    fields.update(extra)
    return create_model(name, __base__=defaults, __doc__=doc, **fields)


VariantParams = overrides_of(TrainParams, "VariantParams",
                             "A variant: a description plus any subset of ``train`` keys that it overrides.")

STRATEGIES = ("linear_probe", "partial", "full")


class EmbedParams(_Section):
    """Frozen feature extractors for linear probes: one ``embed@<backbone>`` stage each."""

    backbones: list[str] = Field(default_factory=lambda: ["efficientnet_lite0"])
    weights: Literal["imagenet", "random"] = "imagenet"
    batch_size: int = Field(32, ge=1)

    @field_validator("backbones")
    @classmethod
    def _registered(cls, v: list[str]) -> list[str]:
        return [_registered_backbone(b) for b in v]


def _registered_backbone(name: str) -> str:
    from lesionlab.backbones import BACKBONES

    if name not in BACKBONES:
        close = difflib.get_close_matches(name, list(BACKBONES), n=1)
        raise ValueError(f"unknown backbone {name!r}{f' (did you mean {close[0]!r}?)' if close else ''}; "
                         f"registered: {sorted(BACKBONES)}")
    return name


class BackboneParams(_Section):
    """Training config of a pretrained-backbone variant (``probe:`` and ``finetune:`` defaults)."""

    backbone: str = "efficientnet_lite0"
    weights: Literal["imagenet", "random"] = "imagenet"
    strategy: Literal["linear_probe", "partial", "full"] = "partial"
    trainable_blocks: int = Field(4, ge=0, description="partial: how many of the last backbone stages train")
    image_size: Optional[int] = Field(None, ge=32, le=512, description="input side; None = prepare.backbone_image_size")
    epochs: int = Field(8, ge=1)
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(5e-4, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    warmup_epochs: int = Field(1, ge=0)
    patience: int = Field(3, ge=1)
    head: Literal["linear", "mlp"] = "linear"
    hidden_units: int = Field(256, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)
    loss: Literal["cross_entropy", "focal"] = "cross_entropy"
    focal_gamma: float = Field(2.0, ge=0)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    class_weights: bool = True
    sampler: Literal["shuffle", "class_balanced"] = "shuffle"
    mixup: float = Field(0.0, ge=0, description="Beta(a, a) mixing coefficient; 0 = off")
    cutmix: float = Field(0.0, ge=0, description="Beta(a, a) box share; 0 = off")
    ema: float = Field(0.0, ge=0, lt=1, description="EMA decay of the weights (e.g. 0.999); 0 = off")
    augment: bool = True
    tta: bool = True

    @field_validator("backbone")
    @classmethod
    def _registered(cls, v: Optional[str]) -> Optional[str]:
        return v if v is None else _registered_backbone(v)


BackboneVariantParams = overrides_of(BackboneParams, "BackboneVariantParams", "A probe or fine-tune variant: a "
                                    "description plus any subset of the section's defaults it overrides.")


def _probe_defaults() -> BackboneParams:
    return BackboneParams(strategy="linear_probe", trainable_blocks=0, epochs=60, batch_size=256, learning_rate=1e-3,
                          patience=10, warmup_epochs=2, label_smoothing=0.0, class_weights=False, tta=False)


class TabularParams(_Section):
    """A metadata-only model (``tabular:`` defaults; ``tabulars:`` entries override any key)."""

    model: Literal["gbm", "logistic"] = "gbm"
    features: list[Literal["age", "sex", "site"]] = Field(default_factory=lambda: ["age", "sex", "site"],
                                                          min_length=1)
    class_weights: bool = True
    n_estimators: int = Field(400, ge=1, description="gbm: boosting rounds (early stopping may use fewer)")
    learning_rate: float = Field(0.05, gt=0)
    num_leaves: int = Field(15, ge=2)
    min_child_samples: int = Field(20, ge=1)
    patience: int = Field(30, ge=1, description="gbm: rounds without a better val log-loss before stopping")
    C: float = Field(1.0, gt=0, description="logistic: inverse L2 regularisation strength")

    @field_validator("features")
    @classmethod
    def _unique(cls, v: Optional[list[str]]) -> Optional[list[str]]:
        if v is not None and len(set(v)) != len(v):
            raise ValueError(f"features must not repeat: {v}")
        return v


TabularVariantParams = overrides_of(TabularParams, "TabularVariantParams",
                                   "A metadata model: a description plus any subset of ``tabular`` keys it overrides.")


class EnsembleParams(_Section):
    """Defaults of every ensemble (``ensembles:`` entries name their members and override any key)."""

    method: Literal["mean", "weighted", "stacking"] = "stacking"
    folds: int = Field(5, ge=2, description="stacking: cross-fitting folds over the validation lesions")
    C: float = Field(1.0, gt=0, description="stacking: inverse L2 strength of the meta-learner's penalty")
    class_weights: bool = Field(True, description="weighted / stacking: every class weighs the same in the fit")


EnsembleVariantParams = overrides_of(EnsembleParams, "EnsembleVariantParams", "An ensemble: its members (two or "
                                    "more rows) plus any subset of ``ensemble`` keys it overrides.",
                                    members=(list[str], Field(min_length=2)))


class EnsembleConfig(EnsembleParams):
    members: list[str]


class UncertaintyParams(_Section):
    """When a prediction is flagged 'uncertain' (abstention): either condition suffices."""

    max_prob_below: float = Field(0.5, ge=0, le=1, description="flag when the top probability is below this")
    entropy_above: float = Field(0.6, ge=0, le=1, description="flag when entropy / log(k) is above this")
    calibrated: bool = Field(True, description="apply the variant's validation temperature before flagging")


class ExplainParams(_Section):
    """Grad-CAM of the image models (stage ``explain@<variant>``), scored against the lesion masks."""

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
    pairs: list[list[str]] = Field(default_factory=list,
                                   description="[a, b] pairs shown as paired bootstrap CIs of a - b")
    age_bands: list[float] = Field(default_factory=lambda: [30, 45, 60, 75],
                                   description="subgroup slices: upper edges of the age bands (years)")
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


class Params(_Section):
    dataset: str = "synthetic"
    dataset_source: str = "src/lesionlab/synthetic.py"
    base: BaseParams = BaseParams()
    synthetic: SyntheticParams = SyntheticParams()
    prepare: PrepareParams = PrepareParams()
    split: SplitParams = SplitParams()
    augment: AugmentParams = AugmentParams()
    train: TrainParams = TrainParams()
    variants: dict[str, VariantParams] = Field(min_length=1)
    embed: EmbedParams = EmbedParams()
    probe: BackboneParams = Field(default_factory=_probe_defaults)
    finetune: BackboneParams = BackboneParams()
    probes: dict[str, BackboneVariantParams] = Field(default_factory=dict)
    finetunes: dict[str, BackboneVariantParams] = Field(default_factory=dict)
    tabular: TabularParams = TabularParams()
    tabulars: dict[str, TabularVariantParams] = Field(default_factory=dict)
    ensemble: EnsembleParams = EnsembleParams()
    ensembles: dict[str, EnsembleVariantParams] = Field(default_factory=dict)
    uncertainty: UncertaintyParams = UncertaintyParams()
    explain: ExplainParams = ExplainParams()
    compare: CompareParams = CompareParams()
    #: external test sets: every trained model and ensemble also scores these datasets (never trained on)
    external: list[str] = Field(default_factory=list)

    @field_validator("variants", "probes", "finetunes", "tabulars", "ensembles")
    @classmethod
    def _variant_names(cls, v: dict) -> dict:
        for name in v:
            if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
                raise ValueError(f"variant name {name!r} must be lower-case letters, digits and '_'")
        return v

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, v: str, info: ValidationInfo) -> str:
        from lesionlab.datasets import DatasetError, dataset_info

        try:
            dataset_info(v, (info.context or {}).get("root"))
        except DatasetError as err:
            raise ValueError(str(err)) from None
        return v

    @model_validator(mode="after")
    def _cross_checks(self, context: ValidationInfo) -> "Params":
        from lesionlab.datasets import DATASETS, dataset_info

        info = dataset_info(self.dataset, (context.context or {}).get("root"))
        if self.dataset_source != info.source:
            raise ValueError(f"dataset_source must be {info.source!r} for dataset {self.dataset!r} (got "
                             f"{self.dataset_source!r}): it is the path dvc.yaml's prepare stage depends on. "
                             f"Switch both: dvc exp run -S dataset={self.dataset} -S dataset_source={info.source}")
        if self.split.method == "predefined" and not info.has_split:
            raise ValueError(f"split.method: predefined needs a source with its own split; {self.dataset!r} has none "
                             f"(sources with one: {[n for n, i in DATASETS.items() if i.has_split]})")
        if len(set(self.external)) != len(self.external):
            raise ValueError(f"external: a dataset is listed twice: {self.external}")
        for name in self.external:
            if name == self.dataset:
                raise ValueError(f"external: {name!r} is the dataset the models train on; an external test set "
                                 "must be another one")
            ext = dataset_info(name, (context.context or {}).get("root"))
            if ext.raw_dir is None:
                raise ValueError(f"external: {name!r} is generated by the project; an external test set is a "
                                 "user's download under data/<name>/")
        if self.split.val_fraction + self.split.test_fraction >= 0.8:
            raise ValueError("split.val_fraction + split.test_fraction must leave at least 20 % for training")
        names = self.all_variants()
        if self.compare.baseline not in names:
            raise ValueError(f"compare.baseline {self.compare.baseline!r} is not one of the variants {names}")
        seen: dict[str, str] = {}
        for section in SECTIONS:
            for name in getattr(self, section):
                if name in seen:
                    raise ValueError(f"{section}.{name}: the name is already used in {seen[name]} "
                                     "(every variant writes results/<dataset>/variants/<name>)")
                seen[name] = section
        for name in self.probes:
            cfg = self.backbone_variant(name)
            if cfg.strategy != "linear_probe":
                raise ValueError(f"probes.{name}.strategy must be linear_probe (fine-tuning belongs under finetunes:)")
            if cfg.backbone not in self.embed.backbones:
                raise ValueError(f"probes.{name}: backbone {cfg.backbone!r} has no embed stage; add it to "
                                 f"embed.backbones {self.embed.backbones}")
            if cfg.weights != self.embed.weights:
                raise ValueError(f"probes.{name}.weights is {cfg.weights!r} but the cached embeddings use "
                                 f"embed.weights {self.embed.weights!r}")
            if cfg.cutmix > 0:
                raise ValueError(f"probes.{name}.cutmix: cutmix needs images; a probe trains on embeddings (use mixup)")
        from lesionlab.backbones import BACKBONES

        for name in self.finetunes:
            cfg = self.backbone_variant(name)
            if cfg.strategy == "linear_probe":
                raise ValueError(f"finetunes.{name}.strategy: linear_probe variants belong under probes: "
                                 "(they reuse the cached embeddings)")
            unsupported = [k for k, on in (("sampler", cfg.sampler != "shuffle"), ("mixup", cfg.mixup > 0),
                                           ("cutmix", cfg.cutmix > 0)) if on]
            if unsupported and BACKBONES[cfg.backbone].framework == "keras":
                raise ValueError(f"finetunes.{name}: {unsupported} are implemented by the PyTorch trainer "
                                 f"only; {cfg.backbone!r} is a Keras backbone")
        rows = self.scored_rows()
        for name, entry in self.ensembles.items():
            unknown = [m for m in entry.members if m not in rows]
            if unknown:
                raise ValueError(f"ensembles.{name}.members: {unknown} not trained by this params.yaml; members "
                                 f"can be {rows}")
            kinds = {m: self.preprocess(m.removesuffix("+tta") if m.removesuffix("+tta") in self.variants else None)
                     for m in entry.members}
            if len(set(kinds.values())) > 1:
                raise ValueError(f"ensembles.{name}.members: the members' images are preprocessed differently "
                                 f"({ {m: f'{p.color_constancy}/{p.resize}' for m, p in kinds.items()} }); an ensemble "
                                 "combines models that read the same images")
            if len(set(entry.members)) != len(entry.members):
                raise ValueError(f"ensembles.{name}.members: a member is listed twice: {entry.members}")
        images = self.image_variants()
        unknown = [v for v in self.explain.variants if v not in images]
        if unknown:
            raise ValueError(f"explain.variants: {unknown} is not an image model of this params.yaml; Grad-CAM "
                             f"explains {images}")
        for pair in self.compare.pairs:
            unknown = [m for m in pair if m not in rows + list(self.ensembles)]
            if unknown:
                raise ValueError(f"compare.pairs: {unknown} is not a leaderboard row; rows: {rows + list(self.ensembles)}")
        return self

    def all_variants(self) -> list[str]:
        """Every trained model the comparison reads: CNN ladder, probes, fine-tunes, tabular (params.yaml order)."""
        return [*self.variants, *self.probes, *self.finetunes, *self.tabulars]

    def image_variants(self) -> list[str]:
        """The models that look at pixels (CNN ladder, probes, fine-tunes): what Grad-CAM can explain."""
        return [*self.variants, *self.probes, *self.finetunes]

    def scored_rows(self) -> list[str]:
        """Every model row an ensemble may combine: each trained model, plus ``<name>+tta`` where TTA is on."""
        rows = []
        for name in self.all_variants():
            rows.append(name)
            if (name in self.probes or name in self.finetunes) and self.backbone_variant(name).tta:
                rows.append(name + "+tta")
        return rows

    def tabular_variant(self, name: str) -> TabularParams:
        """The effective config of a metadata model: ``tabular`` defaults + its overrides."""
        if name not in self.tabulars:
            raise ParamsError(f"{PARAMS_FILE}: unknown tabular model {name!r}; tabulars: {list(self.tabulars)}")
        overrides = {k: v for k, v in self.tabulars[name].model_dump().items() if v is not None and k != "description"}
        return self.tabular.model_copy(update=overrides)

    def ensemble_config(self, name: str) -> EnsembleConfig:
        """The effective config of an ensemble: ``ensemble`` defaults + its members and overrides."""
        if name not in self.ensembles:
            raise ParamsError(f"{PARAMS_FILE}: unknown ensemble {name!r}; ensembles: {list(self.ensembles)}")
        overrides = {k: v for k, v in self.ensembles[name].model_dump().items() if v is not None and k != "description"}
        return EnsembleConfig(**{**self.ensemble.model_dump(), **overrides})

    def backbone_variant(self, name: str) -> BackboneParams:
        """The effective config of a probe or fine-tune variant: its section's defaults + its overrides."""
        if name in self.probes:
            defaults, entry = self.probe, self.probes[name]
        elif name in self.finetunes:
            defaults, entry = self.finetune, self.finetunes[name]
        else:
            raise ParamsError(f"{PARAMS_FILE}: unknown backbone variant {name!r}; probes: {list(self.probes)}, "
                              f"finetunes: {list(self.finetunes)}")
        overrides = {k: v for k, v in entry.model_dump().items() if v is not None and k != "description"}
        cfg = defaults.model_copy(update=overrides)
        if cfg.image_size is None:
            cfg = cfg.model_copy(update={"image_size": self.prepare.backbone_image_size})
        return cfg

    def description(self, name: str) -> str:
        for section in (self.variants, self.probes, self.finetunes, self.tabulars, self.ensembles):
            if name in section:
                return section[name].description
        return ""

    def preprocess(self, name: str | None = None):
        """The image preprocessing of a CNN-ladder variant (its own ``color_constancy`` / ``resize``, else prepare's),
        or prepare's for any other row (``name`` None)."""
        from lesionlab.preprocess import Preprocess

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
            twins = [b for b in self.variants if b != a and self.preprocess(b) == self.preprocess() and bare(b) == bare(a)]
            out.extend([a, b] for b in twins[:1])
        return out

    def variant(self, name: str) -> TrainParams:
        """The effective training config of a variant: ``train`` defaults + the variant's overrides."""
        if name not in self.variants:
            raise ParamsError(f"{PARAMS_FILE}: unknown variant {name!r}; defined: {list(self.variants)}")
        overrides = {k: v for k, v in self.variants[name].model_dump().items() if v is not None and k != "description"}
        return self.train.model_copy(update=overrides)


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
    model: Any = Params
    for part in loc[:-1]:
        if model is Params and part in SECTIONS:
            model = part
            continue
        if model in SECTIONS:
            model = {"variants": VariantParams, "probes": BackboneVariantParams, "finetunes": BackboneVariantParams,
                     "tabulars": TabularVariantParams, "ensembles": EnsembleVariantParams}[model]
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
        raise YamlError(f"{source}, line {line}: {err.problem} (DVC refuses a mapping with a repeated key, where "
                        "a plain YAML reader would silently keep the last one): keep one") from None
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
