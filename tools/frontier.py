"""Accuracy per CPU second of the pretrained backbones on HAM10000: backbone x input size x precision, short runs.

For each backbone (EfficientNet-Lite0/1/2 by default) and input size (128/192/224) this fine-tunes the last
``trainable_blocks`` stages + head (the pipeline's ``finetune:`` defaults, ``strategy: partial``) for a few epochs
on a class-stratified subset of HAM10000's lesion-grouped *training* split and scores balanced accuracy on a subset
of the *validation* split (the test split is never read), with a lesion-bootstrap CI. Beside each run it times a
few batches of every training mode the pipeline uses (partial and full fine-tuning, float32 and bfloat16) and
inference, and projects what the fine-tune and embedding stages of a HAM10000 run with that configuration would
cost on this machine (split sizes, epochs, seeds and TTA from the pipeline's params). The proposal is the most
accurate configuration whose projected run fits the budget.

    python -m tools.frontier --data ../shared/datasets/ham10000            # ~20 min on 2 CPU cores
    python -m lesionlab docs                                                # the docs table from frontier.json

Short runs rank configurations; they do not give the accuracy of a full run. Research use only, not diagnosis.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "reports" / "ham10000" / "frontier.json"
N_VIEWS = 8  # TTA / embedding views per image (lesionlab.models.tta)


def subset(table, splits, split: str, n: int, seed: int):
    """``n`` rows of ``split``, stratified by label (each class keeps its share, at least one row)."""
    rows = table[splits["split"].to_numpy() == split]
    if n >= len(rows):
        return rows
    rng = np.random.default_rng(seed)
    shares = rows["label"].value_counts(normalize=True)
    picked = []
    for label, share in sorted(shares.items()):
        pool = rows.index[rows["label"] == label].to_numpy()
        k = min(len(pool), max(1, round(share * n)))
        picked.extend(rng.choice(pool, size=k, replace=False))
    return rows.loc[sorted(picked)]


def load_data(folder: Path, n_train: int, n_val: int, size: int, seed: int, split_cfg) -> dict:
    """Decoded subsets of HAM10000's training and validation splits (the pipeline's lesion-grouped split)."""
    from lesionlab.data import datasets, prepare, splitting

    info = datasets.dataset_info("ham10000", ROOT)
    table = datasets.import_dataset(info, folder)
    table = table[table["row_problem"].fillna("") == ""].reset_index(drop=True)
    splits = splitting.split_by_lesion(table, split_cfg.val_fraction, split_cfg.test_fraction, seed)
    counts = splits["split"].value_counts().to_dict()
    train, val = subset(table, splits, "train", n_train, seed), subset(table, splits, "val", n_val, seed + 1)
    classes = sorted(table["label"].unique())
    out = {"classes": classes, "split_sizes": {k: int(v) for k, v in counts.items()}, "n_images": len(table)}
    for name, rows in (("train", train), ("val", val)):
        images, *_ = prepare.build_image_cache(rows.reset_index(drop=True), size, workers=2, progress=False)
        out[name] = images
        out[f"y_{name}"] = rows["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
        out[f"lesions_{name}"] = rows["lesion_id"].to_numpy()
    return out


def build(backbone: str, size: int, strategy: str, cfg, n_classes: int, precision: str):
    from lesionlab.models import compute, torch_models
    from lesionlab.models.backbones import backbone_spec
    from lesionlab.models.weights import resolve_weights

    spec = backbone_spec(backbone)
    record = resolve_weights(spec, "imagenet", size, ROOT)
    features = torch_models.build_features(spec, record.path)
    head = torch_models.make_head(spec.features, n_classes, cfg.head, cfg.hidden_units, cfg.dropout)
    model = torch_models.BackboneNet(spec, features, head, size)
    torch_models.apply_strategy(model, spec, strategy, cfg.trainable_blocks)
    run = compute.resolve(compute_params(precision)).for_training()  # as the pipeline's fine-tunes train
    return run.prepare_model(model), run


def compute_params(precision: str):
    from lesionlab.config import ComputeParams

    return ComputeParams(device="cpu", precision=precision)


def train_images_per_second(model, run, images: np.ndarray, y: np.ndarray, batch: int, batches: int) -> float:
    """Training steps (forward, backward, AdamW) on real images: one warm-up batch, then ``batches`` timed."""
    import torch
    import torch.nn.functional as F

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    model.train()
    seconds = 0.0
    for i in range(batches + 1):
        idx = np.arange(i * batch, (i + 1) * batch) % len(images)
        x, t = torch.from_numpy(images[idx]), torch.from_numpy(y[idx])
        started = time.perf_counter()
        with run.autocast():
            logits = model(x).float()
        loss = F.cross_entropy(logits, t)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i:
            seconds += time.perf_counter() - started
    return batches * batch / seconds


def score(proba: np.ndarray, y: np.ndarray, lesions: np.ndarray, k: int, seed: int) -> dict:
    from lesionlab.evaluation import bootstrap, metrics

    pred = proba.argmax(axis=1)
    value = metrics.balanced_accuracy(metrics.confusion_matrix(y, pred, k))
    weights = bootstrap.resample_weights(lesions, 1000, seed)
    low, high = bootstrap.percentile_ci(bootstrap.weighted_balanced_accuracy(weights, y, pred, k))
    return {"balanced_accuracy": round(value, 4), "ci": [round(low, 4), round(high, 4)]}


def run_config(data: dict, backbone: str, size: int, cfg, args) -> dict:
    """One short partial fine-tune (bfloat16 where the CPU has it) + the throughput probes of this config."""
    import torch

    from lesionlab.models import torch_models, torch_train

    k = len(data["classes"])
    torch_models.seed_everything(args.seed)
    model, run = build(backbone, size, "partial", cfg, k, "auto")
    rng = np.random.default_rng(args.seed + 1)
    aug = args.augment

    def make_batch(idx, training):
        batch = torch.from_numpy(np.asarray(data["train"][idx]))
        return torch_train.augment_batch(batch, rng, aug.zoom, aug.brightness, aug.contrast)

    def predict(m):
        return torch_train.predict_images(m, data["val"], "cpu", autocast=run.autocast)

    started = time.perf_counter()
    fit = torch_train.fit(
        model, make_batch, data["y_train"], predict, data["y_val"], cfg, k, args.seed, "cpu", progress=False
    )
    seconds = time.perf_counter() - started
    started = time.perf_counter()
    proba = torch_train.predict_images(model, data["val"], "cpu", autocast=run.autocast)
    infer = len(data["val"]) / (time.perf_counter() - started)
    out = {
        "backbone": backbone,
        "image_size": size,
        "precision": run.precision,
        **score(proba, data["y_val"], data["lesions_val"], k, args.seed),
        "epochs": len(fit.history),
        "short_run_seconds": round(seconds, 1),
        "train_images_per_second": {},
        "inference_images_per_second": {run.precision: round(infer, 1)},
    }
    out["short_run_images_per_second"] = round(fit.images_seen / fit.train_seconds, 1)  # with augmentation
    del model
    for strategy in ("partial", "full"):
        for precision in ("float32", "auto"):
            model, mode = build(backbone, size, strategy, cfg, k, precision)
            key = f"{strategy}_{mode.precision}"
            if key not in out["train_images_per_second"]:
                ips = train_images_per_second(model, mode, data["train"], data["y_train"], cfg.batch_size, args.batches)
                out["train_images_per_second"][key] = round(ips, 1)
            del model
    return out


def project(row: dict, plan: dict) -> dict:
    """Seconds the fine-tune and embedding stages of a HAM10000 run would take with this row's configuration."""
    ips, infer = row["train_images_per_second"], next(iter(row["inference_images_per_second"].values()))
    precision = row["precision"]
    n_train, n_val, n_scored = plan["n_train"], plan["n_val"], plan["n_val"] + plan["n_test"]
    per_run = 0.0
    for strategy in plan["strategies"]:
        per_run += n_train * plan["epochs"] / ips[f"{strategy}_{precision}"]  # training
        per_run += n_val * plan["epochs"] / infer  # validation after every epoch
        per_run += n_scored * (N_VIEWS if plan["tta"] else 1) / infer  # the scored predictions
    embed = plan["n_images"] * N_VIEWS / infer if plan["embed"] else 0.0
    seconds = per_run * plan["seeds"] + embed
    return {"seconds": round(seconds), "hours": round(seconds / 3600, 2)}


def run_plan(params, data: dict) -> dict:
    """What a HAM10000 run trains, from the pipeline's params (the fine-tune variants, epochs, seeds, TTA)."""
    strategies = [params.backbone_variant(name).strategy for name in params.finetunes]
    first = params.backbone_variant(next(iter(params.finetunes))) if params.finetunes else None
    sizes = data["split_sizes"]
    return {
        "strategies": strategies,
        "epochs": first.epochs if first else 0,
        "tta": bool(first.tta) if first else False,
        "seeds": 1 + len(params.base.replicate_seeds),
        "embed": bool(params.embed.backbones),
        "n_images": data["n_images"],
        "n_train": sizes.get("train", 0),
        "n_val": sizes.get("val", 0),
        "n_test": sizes.get("test", 0),
    }


def propose(rows: list[dict], budget_hours: float, rest_hours: float) -> dict | None:
    """The most accurate row whose projected fine-tune + embedding stages fit ``budget_hours - rest_hours``."""
    fits = [r for r in rows if r["projected"]["hours"] <= budget_hours - rest_hours]
    if not fits:
        return None
    best = max(fits, key=lambda r: (r["balanced_accuracy"], -r["projected"]["hours"]))
    return {
        "backbone": best["backbone"],
        "image_size": best["image_size"],
        "precision": best["precision"],
        "balanced_accuracy": best["balanced_accuracy"],
        "projected_hours": round(best["projected"]["hours"] + rest_hours, 2),
    }


def find_data(given: str | None) -> Path:
    for candidate in (given, os.environ.get("LESIONLAB_HAM10000"), str(ROOT.parent / "shared/datasets/ham10000")):
        if candidate and (Path(candidate) / "HAM10000_metadata.csv").is_file():
            return Path(candidate)
    raise SystemExit("HAM10000 not found: pass --data FOLDER (the published layout) or set $LESIONLAB_HAM10000")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.frontier", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=None, help="HAM10000's folder (default: $LESIONLAB_HAM10000, ../shared/...)")
    p.add_argument("--backbones", nargs="+", default=["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
    p.add_argument("--sizes", nargs="+", type=int, default=[128, 192, 224])
    p.add_argument("--train-images", type=int, default=2000, help="training subset (class-stratified)")
    p.add_argument("--val-images", type=int, default=600, help="validation subset (class-stratified)")
    p.add_argument("--epochs", type=int, default=3, help="epochs of each short run")
    p.add_argument(
        "--learning-rate",
        type=float,
        default=1e-3,
        help="of each short run, without warmup (the run's 5e-4 with a warmup epoch barely moves in 2 epochs)",
    )
    p.add_argument("--batches", type=int, default=3, help="timed batches of each throughput probe")
    p.add_argument("--budget-hours", type=float, default=4.0, help="the HAM10000 run's budget on this machine")
    p.add_argument(
        "--rest-hours",
        type=float,
        required=True,
        help="hours a HAM10000 run spends outside its fine-tune and embedding stages (CNN ladder, probes, reports)",
    )
    p.add_argument("--rest-source", default="", help="where --rest-hours comes from (recorded in the output)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    from lesionlab.config import parse_params, read_yaml

    source = ROOT / "reports" / "ham10000" / "params.yaml"  # the committed HAM10000 run's configuration
    raw = read_yaml(source.read_text(), str(source))
    raw.pop("external", None)  # external test sets (PH2) are never read here, and need their own cards
    params = parse_params(raw, str(source), ROOT)
    args.augment = params.augment
    folder = find_data(args.data)
    print(f"[frontier] HAM10000 from {folder}: {args.train_images} train / {args.val_images} val images", flush=True)
    data = load_data(folder, args.train_images, args.val_images, max(args.sizes), params.base.seed, params.split)
    plan = run_plan(params, data)
    rows = []
    for backbone in args.backbones:
        for size in args.sizes:
            short = {"epochs": args.epochs, "patience": args.epochs, "learning_rate": args.learning_rate}
            cfg = params.finetune.model_copy(
                update={"backbone": backbone, "image_size": size, "warmup_epochs": 0, **short}
            )
            row = run_config(data, backbone, size, cfg, args)
            row["projected"] = project(row, plan)
            rows.append(row)
            print(
                f"[frontier] {backbone} {size} px {row['precision']}: val balanced accuracy "
                f"{row['balanced_accuracy']:.3f} [{row['ci'][0]:.3f}, {row['ci'][1]:.3f}] in "
                f"{row['short_run_seconds']:.0f} s; train img/s {row['train_images_per_second']}; "
                f"projected fine-tune + embedding stages {row['projected']['hours']:.2f} h",
                flush=True,
            )
    import torch

    result = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()},
        "short_run": {
            "strategy": "partial",
            "train_images": len(data["train"]),
            "val_images": len(data["val"]),
            "epochs": args.epochs,
            "learning_rate": args.learning_rate,
            "warmup_epochs": 0,
            "decoded_size": max(args.sizes),
            "seed": args.seed,
        },
        "plan": plan,
        "budget_hours": args.budget_hours,
        "rest_hours": args.rest_hours,
        "rest_source": args.rest_source,
        "rows": rows,
        "proposal": propose(rows, args.budget_hours, args.rest_hours),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"[frontier] proposal: {result['proposal']}; wrote {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
