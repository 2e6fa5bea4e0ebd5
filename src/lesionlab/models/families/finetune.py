"""Fine-tuned backbones: ``finetune:`` defaults, ``finetunes:`` rows, the last stages (``partial``) or all (``full``)
of a pretrained backbone trained on the images (stage ``finetune@<variant>``; Keras or PyTorch, the backbone's)."""

from __future__ import annotations

from lesionlab.models.families import Family, _backbone, register
from lesionlab.models.families._backbone import BackboneParams, BackboneVariantParams


def validate(params) -> None:
    from lesionlab.models.backbones import BACKBONES

    for name in params.finetunes:
        cfg = params.backbone_variant(name)
        if cfg.strategy == "linear_probe":
            raise ValueError(
                f"finetunes.{name}.strategy: linear_probe variants belong under probes: "
                "(they reuse the cached embeddings)"
            )
        unsupported = [
            k
            for k, on in (("sampler", cfg.sampler != "shuffle"), ("mixup", cfg.mixup > 0), ("cutmix", cfg.cutmix > 0))
            if on
        ]
        if unsupported and BACKBONES[cfg.backbone].framework == "keras":
            raise ValueError(
                f"finetunes.{name}: {unsupported} are implemented by the PyTorch trainer "
                f"only; {cfg.backbone!r} is a Keras backbone"
            )


def describe(params, name: str) -> str:
    return f"fine-tune {params.backbone_variant(name).strategy} (PyTorch, {params.prepare.backbone_image_size} px)"


FAMILY = register(
    Family(
        replicated=True,
        kind="finetune",
        label="fine-tune",
        group="backbone",
        section="finetunes",
        defaults="finetune",
        defaults_model=BackboneParams,
        row_model=BackboneVariantParams,
        stage="backbone",
        dvc_stage="finetune",
        notebook="04_backbone.ipynb",
        title="Backbone variant",
        fit="lesionlab.models.transfer:train_finetune",
        load="lesionlab.models.transfer:load_predictor",
        gradcam="lesionlab.evaluation.explain:backbone_gradcam",
        validate=validate,
        tta=lambda cfg: cfg.tta,
        describe=describe,
        finish=_backbone.with_image_size,
    )
)
