"""The registry of model families (in the spirit of timm's ``register_model``).

A family is one module in this package that calls :func:`register` with a :class:`Family`: the params.yaml
sections it owns (its defaults and the rows that override them), its dvc.yaml stage and notebook, and its
functions: fit, load (for prediction) and Grad-CAM, named ``"module:function"`` and imported only when called
(:meth:`Family.call`), so that reading params.yaml never imports a training framework, and cheap hooks (effective
config, cross-checks, TTA rows, the bench's label). Everything that used to know the
families one by one iterates :data:`FAMILIES` instead: params validation (:mod:`lesionlab.config` assembles
``Params`` from it), ``lesionlab run``, the notebook runner, ``lesionlab predict``, Grad-CAM, the comparison, the
report site and the benchmark. Adding a family is one module here + its params.yaml sections + its dvc.yaml stage
(docs/families.md walks through one).

Framework differences (Keras or PyTorch) live inside a family's functions, never at the call sites.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass

from lesionlab.params_base import ROW_ONLY

#: kind -> family, in registration order (the order rows appear in: CNN ladder, probes, fine-tunes, ...)
FAMILIES: dict[str, Family] = {}

#: the page of a family that brings no notebook: its row's params, fit (``family.call("fit", ...)``), metrics
GENERIC_NOTEBOOK = "09_model.ipynb"

#: the order of the built-in families; a new module is discovered after them, in name order
BUILT_IN = ("cnn", "probe", "finetune", "tabular", "ensemble")


@dataclass(frozen=True)
class Family:
    kind: str  # the training record's `kind`, e.g. "cnn"
    label: str  # short name on the report ("CNN", "probe", ...)
    section: str  # params.yaml section naming its rows, e.g. "variants"
    defaults: str  # params.yaml section of the defaults every row overrides, e.g. "train"
    defaults_model: type  # pydantic model of the defaults section
    row_model: type  # pydantic model of one row (derived: lesionlab.params_base.overrides_of)
    stage: str  # `lesionlab run <stage> --variant NAME`; the dvc.yaml stage(s) run it
    fit: str  # "module:function" (root, params, name, progress=True) -> result; writes outputs
    load: str  # "module:function" (root, dataset, name, record) -> lesionlab.models.predict.Predictor
    notebook: str = GENERIC_NOTEBOOK  # notebooks/<notebook>: the family's page (default: the generic one)
    title: str = "Model"  # the page's title
    outputs: str = "variants"  # results/<ds>/<outputs>/<name>/ (and reports/<ds>/<outputs>/<name>.html)
    dvc_stage: str = ""  # the dvc.yaml foreach stage of its rows (`<dvc_stage>@<name>`); default: stage
    group: str = ""  # the report site's section of its pages; default: label
    image_model: bool = True  # reads pixels: Grad-CAM can explain it, ensembles share its preprocessing
    replicated: bool = False  # trained once per seed of base.training_seeds (`<dvc_stage>_seed@<name>-<seed>`)
    defaults_factory: Callable | None = None  # the defaults when params.yaml omits the section
    required: bool = False  # params.yaml must name at least one row
    gradcam: str | None = None  # "module:function" (root, dataset, name, record) -> (framework, fn, size)
    validate: Callable | None = None  # (params) -> None, raises ValueError naming the key
    tta: Callable | None = None  # (config) -> bool: the row also scores `<name>+tta`
    describe: Callable | None = None  # (params, name) -> the bench's family label
    finish: Callable | None = None  # (params, config) -> config: fill what depends on other sections
    config_model: type | None = None  # the effective config's model when it has more keys than the
    # defaults (an ensemble's members)

    def call(self, role: str, *args, **kwargs):
        """Run the family's ``role`` function (fit, load, gradcam), importing its module now. (`lesionlab deps`
        reads these names: a module that calls a role depends on every family's module for it.)"""
        target = getattr(self, role)
        if target is None:
            raise ValueError(f"model family {self.kind!r} has no {role} function")
        module, _, function = target.partition(":")
        return getattr(importlib.import_module(module), function)(*args, **kwargs)

    @property
    def stage_name(self) -> str:
        return self.dvc_stage or self.stage

    def config(self, params, name: str):
        """The effective config of row ``name``: the defaults section + the row's overrides."""
        defaults = getattr(params, self.defaults)
        overrides = {
            k: v
            for k, v in getattr(params, self.section)[name].model_dump().items()
            if v is not None and k not in ROW_ONLY
        }
        if self.config_model is not None:
            cfg = self.config_model(**{**defaults.model_dump(), **overrides})
        else:
            cfg = defaults.model_copy(update=overrides)
        return self.finish(params, cfg) if self.finish else cfg


def register(family: Family) -> Family:
    if family.kind in FAMILIES and FAMILIES[family.kind] != family:
        raise ValueError(f"model family {family.kind!r} is registered twice")
    FAMILIES[family.kind] = family
    return family


def discover() -> dict[str, Family]:
    """Import every family module of this package (built-ins first), so that each registers itself."""
    names = [m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")]
    for name in [*[b for b in BUILT_IN if b in names], *sorted(set(names) - set(BUILT_IN))]:
        importlib.import_module(f"{__name__}.{name}")
    return FAMILIES


def of_row(params, name: str) -> Family:
    """The family whose params.yaml section names row ``name`` (``<name>+tta`` is its family's too)."""
    base = name.removesuffix("+tta")
    for family in FAMILIES.values():
        if base in getattr(params, family.section):
            return family
    raise KeyError(name)


def generic_rows(params) -> list[str]:
    """The rows of the families that use the generic page (:data:`GENERIC_NOTEBOOK`), in registry order."""
    return [name for f in FAMILIES.values() if f.notebook == GENERIC_NOTEBOOK for name in getattr(params, f.section)]


def for_stage(stage: str) -> list[Family]:
    """The families `lesionlab run <stage>` serves (probes and fine-tunes share the backbone stage)."""
    return [f for f in FAMILIES.values() if f.stage == stage]
