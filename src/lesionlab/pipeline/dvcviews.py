"""DVC's own views of the pipeline, generated from params.yaml's rows: dvc.yaml's top-level ``plots:`` and
``artifacts:``.

Each trained row logs to ``results/<ds>/live/<row>/`` with dvclive (:mod:`lesionlab.models.runlog`); its stage
declares ``metrics.json`` (the four headline test metrics) as its DVC metrics. The plots are overlays per model
family, so that ``dvc plots show`` gives one chart per question instead of one per file:

- validation balanced accuracy and training loss per epoch (per boosting round for the metadata models);
- ROC of malignant vs benign and the top-label reliability curve on the test split;
- the test confusion matrix of each row (DVC's ``confusion`` template).

Every trained row is also a DVC artifact (``artifacts:``, type ``model``: its folder of model files and
training record), so ``dvc artifacts get`` and DVC Studio's model registry find it by name.

A definition must list its files, so ``lesionlab deps`` writes these sections from the rows of params.yaml (and
``deps --check``, which the tests run, fails when one is stale); run it after adding or removing a row.
"""

from __future__ import annotations

LIVE = "results/${dataset}/live"


def _overlay(title: str, rows: list[str], file: str, x: str, y: str, template: str, x_label: str, y_label: str):
    return {
        title: {
            "template": template,
            "x": x,
            "y": {f"{LIVE}/{row}/{file}": y for row in rows},
            "x_label": x_label,
            "y_label": y_label,
        }
    }


def plots(params) -> list[dict]:
    """The ``plots:`` section for ``params``: per family, the curves (families that train in steps), ROC and
    reliability overlays, then one confusion matrix per row."""
    from lesionlab.models.families import FAMILIES

    out: list[dict] = []
    for family in FAMILIES.values():
        rows = list(getattr(params, family.section))
        if not rows:
            continue
        label = family.label
        if family.kind != "ensemble":  # ensembles fit no steps
            step = "boosting round" if family.kind == "tabular" else "epoch"
            out.append(
                _overlay(
                    f"{label}: validation balanced accuracy per {step}",
                    rows,
                    "plots/metrics/val/balanced_accuracy.tsv",
                    "step",
                    "balanced_accuracy",
                    "linear",
                    step,
                    "validation balanced accuracy",
                )
            )
            out.append(
                _overlay(
                    f"{label}: training loss per {step}",
                    rows,
                    "plots/metrics/train/loss.tsv",
                    "step",
                    "loss",
                    "linear",
                    step,
                    "training loss",
                )
            )
        out.append(
            _overlay(
                f"{label}: ROC, malignant vs benign (test)",
                rows,
                "plots/sklearn/roc.json",
                "fpr",
                "tpr",
                "simple",
                "false positive rate",
                "true positive rate",
            )
        )
        out.append(
            _overlay(
                f"{label}: reliability, top-label confidence vs accuracy (test)",
                rows,
                "plots/sklearn/calibration.json",
                "prob_pred",
                "prob_true",
                "simple",
                "mean confidence",
                "fraction correct",
            )
        )
    for family in FAMILIES.values():
        for row in getattr(params, family.section):
            out.append(
                {
                    f"{LIVE}/{row}/plots/sklearn/confusion_matrix.json": {
                        "template": "confusion",
                        "x": "actual",
                        "y": "predicted",
                        "title": f"{row}: confusion matrix (test)",
                    }
                }
            )
    return out


def artifacts(params) -> dict:
    """The ``artifacts:`` section: every trained row's output folder as a ``model`` artifact."""
    from lesionlab.models.families import FAMILIES

    out = {}
    for family in FAMILIES.values():
        for row in getattr(params, family.section):
            description = params.description(row) or f"{family.label} row {row}"
            out[row] = {
                "path": f"results/${{dataset}}/{family.outputs}/{row}",
                "type": "model",
                "desc": f"{family.title}: {description}",
                "labels": [family.kind],
            }
    return out


def sections(params) -> dict:
    """dvc.yaml's generated top-level sections, by name."""
    return {"artifacts": artifacts(params), "plots": plots(params)}
