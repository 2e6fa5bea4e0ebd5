"""Linear probes: ``probe:`` defaults, ``probes:`` rows, a head trained on the cached embeddings of a frozen backbone
(stage ``probe@<variant>``, which runs ``lesionlab run backbone``; the embeddings come from ``embed@<backbone>``)."""

from __future__ import annotations

from lesionlab.models.families import Family, _backbone, register
from lesionlab.models.families._backbone import BackboneParams, BackboneVariantParams


def probe_defaults() -> BackboneParams:
    return BackboneParams(
        strategy="linear_probe",
        trainable_blocks=0,
        epochs=60,
        batch_size=256,
        learning_rate=1e-3,
        patience=10,
        warmup_epochs=2,
        label_smoothing=0.0,
        class_weights=False,
        tta=False,
    )


def validate(params) -> None:
    for name in params.probes:
        cfg = params.backbone_variant(name)
        if cfg.strategy != "linear_probe":
            raise ValueError(f"probes.{name}.strategy must be linear_probe (fine-tuning belongs under finetunes:)")
        if cfg.backbone not in params.embed.backbones:
            raise ValueError(
                f"probes.{name}: backbone {cfg.backbone!r} has no embed stage; add it to "
                f"embed.backbones {params.embed.backbones}"
            )
        if cfg.weights != params.embed.weights:
            raise ValueError(
                f"probes.{name}.weights is {cfg.weights!r} but the cached embeddings use "
                f"embed.weights {params.embed.weights!r}"
            )
        if cfg.cutmix > 0:
            raise ValueError(f"probes.{name}.cutmix: cutmix needs images; a probe trains on embeddings (use mixup)")


FAMILY = register(
    Family(
        replicated=True,
        kind="probe",
        label="probe",
        group="backbone",
        section="probes",
        defaults="probe",
        defaults_model=BackboneParams,
        row_model=BackboneVariantParams,
        defaults_factory=probe_defaults,
        stage="backbone",
        dvc_stage="probe",
        notebook="04_backbone.ipynb",
        title="Backbone variant",
        fit="lesionlab.models.transfer:train_probe",
        load="lesionlab.models.transfer:load_predictor",
        gradcam="lesionlab.evaluation.explain:backbone_gradcam",
        validate=validate,
        tta=lambda cfg: cfg.tta,
        describe=lambda params, name: "linear probe (PyTorch head on cached embeddings)",
        finish=_backbone.with_image_size,
    )
)
