"""The CNN ablation ladder: ``train:`` defaults, ``variants:`` rows, stage ``train@<variant>`` (Keras)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from lesionlab.models.families import Family, register
from lesionlab.params_base import Section, overrides_of


class TrainParams(Section):
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
    color_constancy: Literal["none", "shades_of_gray"] | None = None
    resize: Literal["squash", "crop", "pad"] | None = None


VariantParams = overrides_of(
    TrainParams, "VariantParams", "A variant: a description plus any subset of ``train`` keys that it overrides."
)


FAMILY = register(
    Family(
        replicated=True,
        kind="cnn",
        label="CNN",
        group="CNN ladder",
        section="variants",
        defaults="train",
        defaults_model=TrainParams,
        row_model=VariantParams,
        required=True,
        stage="train",
        notebook="03_train.ipynb",
        title="Variant",
        fit="lesionlab.models.train:train_variant",
        load="lesionlab.models.keras_cnn:load_predictor",
        gradcam="lesionlab.evaluation.explain:keras_gradcam",
        describe=lambda params, name: "CNN (Keras)",
    )
)
