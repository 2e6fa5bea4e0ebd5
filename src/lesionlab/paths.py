"""Where every stage reads and writes: one place, mirrored by dvc.yaml's paths."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

#: a dataset, variant, ensemble, backbone or external-set name: one folder name (no separator, no '..'), so that
#: every path built from one stays inside results/<dataset>/ or reports/<dataset>/
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


class UnsafeName(ValueError):
    """A name that would make a path outside the project's folders (``../x``, ``/etc``, ``a/b``)."""


def checked(name: str, what: str = "name") -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise UnsafeName(
            f"{what} {name!r}: not a plain name (letters, digits, '_', '-', '.', '+'; no '/' or '..'): "
            "it names a folder under results/ and reports/"
        )
    return name


def fresh_dir(folder: Path) -> Path:
    """An empty folder (a stage's output is rewritten whole, never patched)."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


def results_dir(root: Path, dataset: str) -> Path:
    return root / "results" / checked(dataset, "dataset")


def reports_dir(root: Path, dataset: str) -> Path:
    return root / "reports" / checked(dataset, "dataset")


def prepared_dir(root: Path, dataset: str) -> Path:
    """Output of ``prepare``: dataset.csv, images.npy, masks.npy (+ the generated source for synthetic)."""
    return results_dir(root, dataset) / "prepared"


def splits_file(root: Path, dataset: str) -> Path:
    return results_dir(root, dataset) / "splits.csv"


def variant_dir(root: Path, dataset: str, variant: str) -> Path:
    """Output of ``train@<variant>``: predictions.csv, model, metrics.json, history.csv."""
    return results_dir(root, dataset) / "variants" / checked(variant, "variant")


def row_dir(root: Path, dataset: str, outputs: str, name: str) -> Path:
    """A trained row's folder: ``results/<ds>/<outputs>/<name>`` (``outputs``: its family's, variants or ensembles)."""
    return results_dir(root, dataset) / checked(outputs, "outputs folder") / checked(name, "variant")


def metrics_file(root: Path, dataset: str, name: str) -> Path:
    """Flat test metrics (+ ``val_`` ones and training figures) of a leaderboard row (the comparison reads it;
    DVC's metrics are the headline subset in :func:`live_dir`)."""
    return results_dir(root, dataset) / "metrics" / f"{checked(name, 'variant')}.json"


def live_dir(root: Path, dataset: str, name: str) -> Path:
    """The dvclive log of a trained row (:mod:`lesionlab.models.runlog`): headline metrics, curves, plots."""
    return results_dir(root, dataset) / "live" / checked(name, "variant")


def history_file(root: Path, dataset: str, name: str) -> Path:
    """Per-epoch (per boosting round) history of a trained row (the report's curves; DVC's plots read the same
    rows from :func:`live_dir`)."""
    return results_dir(root, dataset) / "history" / f"{checked(name, 'variant')}.csv"


def variant_report(root: Path, dataset: str, variant: str) -> Path:
    return reports_dir(root, dataset) / "variants" / f"{checked(variant, 'variant')}.html"


def backbone_cache_dir(root: Path, dataset: str) -> Path:
    """Second output of ``prepare``: images.npy at ``prepare.backbone_image_size`` + image_ids.csv."""
    return results_dir(root, dataset) / "cache"


def embeddings_dir(root: Path, dataset: str, backbone: str) -> Path:
    """Output of ``embed@<backbone>``: features.npy (N, 8 views, D) float16 + embed.json."""
    return results_dir(root, dataset) / "embeddings" / checked(backbone, "backbone")


def ensemble_dir(root: Path, dataset: str, name: str) -> Path:
    """Output of ``ensemble@<name>``: predictions.csv + ensemble.json (kept apart from variants/, which it reads)."""
    return results_dir(root, dataset) / "ensembles" / checked(name, "ensemble")


def ensemble_report(root: Path, dataset: str, name: str) -> Path:
    return reports_dir(root, dataset) / "ensembles" / f"{checked(name, 'ensemble')}.html"


def external_dir(root: Path, dataset: str, name: str) -> Path:
    """External test set ``name`` scored by the models of ``dataset``: prepared/, cache/, predictions/."""
    return results_dir(root, dataset) / "external" / checked(name, "external test set")
