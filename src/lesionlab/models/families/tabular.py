"""Metadata models: ``tabular:`` defaults, ``tabulars:`` rows (LightGBM or logistic regression on age, sex and
site; stage ``tabular@<variant>``). They read no pixels: a dataset without metadata skips them with the reason."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from lesionlab.models.families import Family, register
from lesionlab.params_base import Section, overrides_of


class TabularParams(Section):
    """A metadata-only model (``tabular:`` defaults; ``tabulars:`` entries override any key)."""

    model: Literal["gbm", "logistic"] = "gbm"
    features: list[Literal["age", "sex", "site"]] = Field(default_factory=lambda: ["age", "sex", "site"], min_length=1)
    class_weights: bool = True
    n_estimators: int = Field(400, ge=1, description="gbm: boosting rounds (early stopping may use fewer)")
    learning_rate: float = Field(0.05, gt=0)
    num_leaves: int = Field(15, ge=2)
    min_child_samples: int = Field(20, ge=1)
    patience: int = Field(30, ge=1, description="gbm: rounds without a better val log-loss before stopping")
    C: float = Field(1.0, gt=0, description="logistic: inverse L2 regularisation strength")

    @field_validator("features")
    @classmethod
    def _unique(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and len(set(v)) != len(v):
            raise ValueError(f"features must not repeat: {v}")
        return v


TabularVariantParams = overrides_of(
    TabularParams,
    "TabularVariantParams",
    "A metadata model: a description plus any subset of ``tabular`` keys it overrides.",
)


FAMILY = register(
    Family(
        kind="tabular",
        label="metadata",
        group="metadata",
        section="tabulars",
        defaults="tabular",
        defaults_model=TabularParams,
        row_model=TabularVariantParams,
        stage="tabular",
        notebook="05_tabular.ipynb",
        title="Metadata model",
        fit="lesionlab.models.tabular:train_tabular",
        load="lesionlab.models.tabular:load_predictor",
        image_model=False,
        describe=lambda params, name: f"metadata ({params.tabular_variant(name).model})",
    )
)
