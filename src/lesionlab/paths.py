"""Where every stage reads and writes: one place, mirrored by dvc.yaml's paths."""

from __future__ import annotations

from pathlib import Path


def results_dir(root: Path, dataset: str) -> Path:
    return root / "results" / dataset


def reports_dir(root: Path, dataset: str) -> Path:
    return root / "reports" / dataset


def prepared_dir(root: Path, dataset: str) -> Path:
    """Output of ``prepare``: dataset.csv, images.npy, masks.npy (+ the generated source for synthetic)."""
    return results_dir(root, dataset) / "prepared"


def splits_file(root: Path, dataset: str) -> Path:
    return results_dir(root, dataset) / "splits.csv"


def variant_dir(root: Path, dataset: str, variant: str) -> Path:
    """Output of ``train@<variant>``: predictions.csv, model, metrics.json, history.csv."""
    return results_dir(root, dataset) / "variants" / variant


def variant_report(root: Path, dataset: str, variant: str) -> Path:
    return reports_dir(root, dataset) / "variants" / f"{variant}.html"


def backbone_cache_dir(root: Path, dataset: str) -> Path:
    """Second output of ``prepare``: images.npy at ``prepare.backbone_image_size`` + image_ids.csv."""
    return results_dir(root, dataset) / "cache"


def embeddings_dir(root: Path, dataset: str, backbone: str) -> Path:
    """Output of ``embed@<backbone>``: features.npy (N, 8 views, D) float16 + embed.json."""
    return results_dir(root, dataset) / "embeddings" / backbone


def ensemble_dir(root: Path, dataset: str, name: str) -> Path:
    """Output of ``ensemble@<name>``: predictions.csv + ensemble.json (kept apart from variants/, which it reads)."""
    return results_dir(root, dataset) / "ensembles" / name


def ensemble_report(root: Path, dataset: str, name: str) -> Path:
    return reports_dir(root, dataset) / "ensembles" / f"{name}.html"


def external_dir(root: Path, dataset: str, name: str) -> Path:
    """External test set ``name`` scored by the models of ``dataset``: prepared/, cache/, predictions/."""
    return results_dir(root, dataset) / "external" / name
