"""Ensembles: ``ensemble:`` defaults, ``ensembles:`` rows naming two or more trained rows as members (soft voting,
fitted weights or cross-fitted stacking; stage ``ensemble@<name>``, outputs under ``results/<ds>/ensembles/``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from lesionlab.models.families import Family, register
from lesionlab.params_base import Section, overrides_of


class EnsembleParams(Section):
    """Defaults of every ensemble (``ensembles:`` entries name their members and override any key)."""

    method: Literal["mean", "weighted", "stacking"] = "stacking"
    folds: int = Field(5, ge=2, description="stacking: cross-fitting folds over the validation lesions")
    C: float = Field(1.0, gt=0, description="stacking: inverse L2 strength of the meta-learner's penalty")
    class_weights: bool = Field(True, description="weighted / stacking: every class weighs the same in the fit")


EnsembleVariantParams = overrides_of(
    EnsembleParams,
    "EnsembleVariantParams",
    "An ensemble: its members (two or more rows) plus any subset of ``ensemble`` keys it overrides.",
    members=(list[str], Field(min_length=2)),
)


class EnsembleConfig(EnsembleParams):
    members: list[str]


def validate(params) -> None:
    rows = params.scored_rows()
    for name, entry in params.ensembles.items():
        unknown = [m for m in entry.members if m not in rows]
        if unknown:
            raise ValueError(
                f"ensembles.{name}.members: {unknown} not trained by this params.yaml; members can be {rows}"
            )
        kinds = {
            m: params.preprocess(m.removesuffix("+tta") if m.removesuffix("+tta") in params.variants else None)
            for m in entry.members
        }
        if len(set(kinds.values())) > 1:
            raise ValueError(
                f"ensembles.{name}.members: the members' images are preprocessed differently "
                f"({ {m: f'{p.color_constancy}/{p.resize}' for m, p in kinds.items()} }); an ensemble "
                "combines models that read the same images"
            )
        if len(set(entry.members)) != len(entry.members):
            raise ValueError(f"ensembles.{name}.members: a member is listed twice: {entry.members}")


FAMILY = register(
    Family(
        kind="ensemble",
        label="ensemble",
        section="ensembles",
        defaults="ensemble",
        defaults_model=EnsembleParams,
        row_model=EnsembleVariantParams,
        stage="ensemble",
        notebook="06_ensemble.ipynb",
        title="Ensemble",
        fit="lesionlab.models.ensemble:build_ensemble",
        load="lesionlab.models.predict:load_ensemble",
        outputs="ensembles",
        image_model=False,
        validate=validate,
        config_model=EnsembleConfig,
        describe=lambda params, name: "ensemble",
    )
)
