"""Pretrained backbones end to end on a tiny project: embed -> probe, fine-tune, and `lesionlab predict`.

Also the pieces of the training loop (schedule, losses, sampler, mixup, strategies) and the TTA
views, each against a property that must hold. PyTorch only in this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import REPO

from lesionlab.config import ParamsError, load_params, parse_params, prune_parents
from lesionlab.models.tta import N_VIEWS, average_views, dihedral, predict_with_tta
from lesionlab.pipeline.contracts import read_predictions

# --- pieces ----------------------------------------------------------------------------------


def test_dihedral_views_are_the_8_distinct_symmetries():
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 255, (2, 5, 5, 3), dtype=np.uint8)
    views = [dihedral(batch, v) for v in range(N_VIEWS)]
    assert len({v.tobytes() for v in views}) == N_VIEWS
    assert np.array_equal(dihedral(views[1], 3), batch)  # rot90 then rot270 = identity
    assert np.array_equal(dihedral(views[4], 4), batch)  # a mirror is its own inverse
    assert all(v.flags.writeable for v in views)
    with pytest.raises(ValueError):
        dihedral(batch, 8)


def test_tta_averages_the_8_views_of_the_scored_rows_and_predicts_each_view_once():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 6, 6, 3), dtype=np.uint8)
    scored = np.array([False, True, True, False, True, True, False])
    seen = []

    def predict(x):  # a per-image function of the pixels that tells views apart: a row's result ignores its batch
        seen.append(len(x))
        w = np.arange(x[0].size, dtype=np.float64).reshape(x.shape[1:])
        score = (x.astype(np.float64) * w).sum(axis=(1, 2, 3))
        return np.stack([score, -score], axis=1)

    proba, proba_tta = predict_with_tta(predict, images, scored, True)
    assert seen == [7] + [4] * (N_VIEWS - 1)  # every row once, then views 1..7 of the scored rows only
    assert np.array_equal(proba, predict(images))
    assert np.allclose(proba_tta[scored], average_views(predict, images[scored], True))
    assert np.array_equal(proba_tta[~scored], proba[~scored])  # train rows keep their single view
    assert not np.allclose(proba_tta[scored], proba[scored])
    assert predict_with_tta(predict, images, scored, False)[1] is None


def test_deterministic_algorithms_skip_the_inductor_import_and_hand_inductor_the_flag():
    code = (
        "import sys, torch\n"
        "from lesionlab.models.torch_models import deterministic_algorithms\n"
        "deterministic_algorithms()\n"
        "assert torch.are_deterministic_algorithms_enabled()\n"
        "assert torch.is_deterministic_algorithms_warn_only_enabled()\n"
        "print('inductor loaded:', 'torch._inductor' in sys.modules)\n"
        "import torch._inductor.config as c\n"
        "assert c.deterministic is True\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TORCHINDUCTOR_DETERMINISTIC"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "inductor loaded: False" in out.stdout


def test_warmup_then_cosine_schedule():
    from lesionlab.models.torch_train import warmup_cosine

    factors = [warmup_cosine(s, 100, 10) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(factors[:10], factors[1:10]))  # rising during warmup
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))  # falling after
    assert factors[-1] < 0.01


def test_ema_follows_the_warmed_up_decay_and_takes_integer_buffers_as_they_are():
    from torch.optim.swa_utils import AveragedModel

    from lesionlab.models.torch_train import ema_average

    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    ema = AveragedModel(net, multi_avg_fn=ema_average(0.9), use_buffers=True)
    start = net[0].weight.detach().clone()
    ema.update_parameters(net)  # the first update copies
    with torch.no_grad():
        net[0].weight.add_(1.0)
        net[1].running_mean.fill_(2.0)
    net[1].num_batches_tracked += 5
    ema.update_parameters(net)  # one update done: decay min(0.9, 2 / 11)
    d = 2 / 11
    torch.testing.assert_close(ema.module[0].weight, d * start + (1 - d) * (start + 1))
    torch.testing.assert_close(ema.module[1].running_mean, torch.full((2,), (1 - d) * 2.0))  # buffers averaged too
    assert int(ema.module[1].num_batches_tracked) == 5
    for _ in range(200):  # later the decay is the configured one
        ema.update_parameters(net)
    torch.testing.assert_close(ema.module[0].weight, start + 1, atol=1e-6, rtol=0)


def test_focal_loss_down_weights_easy_examples_and_smoothing_spreads_targets():
    from lesionlab.models.torch_train import loss_fn, soft_targets

    y = torch.tensor([0, 1])
    logits = torch.tensor([[4.0, 0.0, 0.0], [0.0, 0.5, 0.0]])  # one easy, one hard example
    hard = soft_targets(y, 3, 0.0)
    ce = loss_fn(logits, hard, None, "cross_entropy", 2.0)
    focal = loss_fn(logits, hard, None, "focal", 2.0)
    assert 0 < focal < ce
    smooth = soft_targets(y, 3, 0.3)
    assert torch.allclose(smooth.sum(dim=1), torch.ones(2)) and smooth[0, 1] == pytest.approx(0.1)
    weights = torch.tensor([0.0, 1.0, 1.0])
    assert loss_fn(logits[:1], hard[:1], weights, "cross_entropy", 0) == 0  # class weight 0 silences class 0


def test_class_balanced_sampler_evens_out_the_classes():
    from lesionlab.models.torch_train import epoch_order

    y = np.array([0] * 900 + [1] * 90 + [2] * 10)
    rng = np.random.default_rng(0)
    drawn = np.concatenate([y[epoch_order(y, "class_balanced", rng)] for _ in range(5)])
    share = np.bincount(drawn, minlength=3) / len(drawn)
    assert np.allclose(share, 1 / 3, atol=0.03)
    assert sorted(epoch_order(y, "shuffle", rng)) == list(range(len(y)))


def test_mixup_and_cutmix_keep_targets_distributions():
    from lesionlab.config import BackboneParams
    from lesionlab.models.torch_train import mix, soft_targets

    rng = np.random.default_rng(1)
    x = torch.from_numpy(np.random.default_rng(2).integers(0, 255, (8, 16, 16, 3), dtype=np.uint8))
    targets = soft_targets(torch.arange(8) % 3, 3, 0.0)
    for cfg in (BackboneParams(mixup=0.4), BackboneParams(cutmix=1.0)):
        mixed, t = mix(x, targets, cfg, rng)
        assert mixed.shape == x.shape and torch.allclose(t.sum(dim=1), torch.ones(8))
        assert not torch.equal(mixed, x)
    same, t = mix(x, targets, BackboneParams(), rng)
    assert same is x and t is targets


def test_strategies_freeze_what_they_say():
    from lesionlab.models import torch_models
    from lesionlab.models.backbones import backbone_spec

    spec = backbone_spec("efficientnet_lite0")
    trainable = {}
    for strategy, blocks in (("linear_probe", 0), ("partial", 2), ("full", 0)):
        model = torch_models.BackboneNet(spec, torch_models.build_features(spec), torch.nn.Linear(1280, 7), 64)
        torch_models.apply_strategy(model, spec, strategy, blocks)
        trainable[strategy] = torch_models.count_parameters(model)[1]
        if strategy == "partial":
            stages = torch_models.blocks(spec, model.features)
            assert all(p.requires_grad for p in stages[-1].parameters())
            assert not any(p.requires_grad for p in stages[0].parameters())
            model.train()
            assert not stages[0][1].training and stages[-1][1].training  # frozen BatchNorm stays in eval mode
    assert trainable["linear_probe"] == 1280 * 7 + 7
    assert trainable["linear_probe"] < trainable["partial"] < trainable["full"]


def _params(**sections) -> dict:
    """The repository's params with some sections replaced; the ensembles (whose members are the repository's
    variants) are dropped unless given, so that an error a test expects is the only one."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["ensembles"], raw["compare"]["pairs"], raw["explain"]["variants"] = {}, [], []
    for key, value in sections.items():
        raw[key] = value
    return prune_parents(raw)


@pytest.mark.parametrize(
    "edit, message",
    [
        ({"probes": {"p": {"cutmix": 1.0}}}, "cutmix needs images"),
        ({"probes": {"p": {"backbone": "resnet18"}}}, "has no embed stage"),
        ({"probes": {"p": {"weights": "random"}}}, "embed.weights"),
        ({"finetunes": {"f": {"strategy": "linear_probe"}}}, "belong under probes"),
        ({"finetunes": {"f": {"backbone": "keras_resnet50", "mixup": 0.2}}}, "PyTorch trainer only"),
        ({"finetunes": {"cnn_aug": {}}}, "already used in variants"),
        ({"finetunes": {"f": {"backbone": "resnet_18"}}}, "did you mean 'resnet18'"),
        ({"finetunes": {"f": {"stratgy": "full"}}}, "did you mean 'strategy'"),
    ],
)
def test_bad_backbone_params_name_the_key(edit, message):
    with pytest.raises(ParamsError, match=message):
        parse_params(_params(**edit))


# --- a tiny project, end to end -----------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_project(tmp_path_factory):
    """Synthetic data (60 lesions) prepared with a 32-px backbone cache, split, embedded."""
    from lesionlab.data.prepare import prepare
    from lesionlab.data.splitting import make_splits
    from lesionlab.models.transfer import embed_backbone

    root = tmp_path_factory.mktemp("transfer")
    raw = _params(
        probes={
            "probe_tta": {"tta": True, "epochs": 5},
            "probe_mlp": {"head": "mlp", "mixup": 0.2, "ema": 0.9, "epochs": 5, "sampler": "class_balanced"},
            "kprobe": {"backbone": "keras_mobilenet_v2", "epochs": 3},
        },
        finetunes={
            "ft": {"trainable_blocks": 2, "epochs": 2, "patience": 1, "tta": True, "cutmix": 1.0, "ema": 0.9},
            "kft": {
                "backbone": "keras_mobilenet_v2",
                "weights": "random",
                "strategy": "partial",
                "trainable_blocks": 2,
                "epochs": 2,
                "patience": 1,
                "tta": True,
                "label_smoothing": 0.1,
                "loss": "focal",
                "ema": 0.9,
            },
        },
    )
    raw.update(dataset="synthetic", dataset_source="src/lesionlab/data/synthetic.py")
    raw["embed"]["backbones"] = ["efficientnet_lite0", "keras_mobilenet_v2"]
    raw["synthetic"].update({"n_lesions": 60, "width": 48, "height": 36})
    raw["prepare"].update({"image_size": 16, "backbone_image_size": 32})
    raw["variants"] = {"cnn_baseline": {}}
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    (root / "dvc.yaml").write_text("stages: {}\n")
    params = load_params(root / "params.yaml")
    prepare(params, root, workers=1, progress=False)
    from lesionlab.data.prepare import load_prepared

    table = load_prepared(root, "synthetic").table
    splits = make_splits(table, "lesion_grouped", 0.2, 0.25, 0)
    splits.to_csv(root / "results/synthetic/splits.csv", index=False)
    embed_backbone(root, params, "efficientnet_lite0", progress=False)
    return root, params


def test_embeddings_cache_every_view_with_provenance(tiny_project):
    root, params = tiny_project
    folder = root / "results/synthetic/embeddings/efficientnet_lite0"
    features = np.load(folder / "features.npy")
    info = json.loads((folder / "embed.json").read_text())
    n = len(pd.read_csv(root / "results/synthetic/prepared/dataset.csv"))
    assert features.shape == (n, N_VIEWS, 1280) and features.dtype == np.float16
    assert not np.allclose(features[:, 0], features[:, 1])  # the views differ
    assert info["weights"]["sha256"].startswith("57934424") and info["device"] in ("cpu", "cuda")


def test_probes_and_finetune_write_the_contracts(tiny_project):
    from lesionlab.models.transfer import train_finetune, train_probe

    root, params = tiny_project
    classes = tuple(json.loads((root / "results/synthetic/prepared/summary.json").read_text())["classes"])
    for name, train in (("probe_tta", train_probe), ("probe_mlp", train_probe), ("ft", train_finetune)):
        result = train(root, params, name, progress=False)
        folder = root / "results/synthetic/variants" / name
        pred = read_predictions(folder / "predictions.csv", classes)
        assert set(pred["split"]) == {"train", "val", "test"}
        metrics = json.loads((root / f"results/synthetic/metrics/{name}.json").read_text())
        assert 0 <= metrics["balanced_accuracy"] <= 1 and metrics["train_images_per_second"] > 0
        training = json.loads((folder / "training.json").read_text())
        assert training["weights"]["file"] == "efficientnet-lite0-57934424.pth"
        live = root / "results/synthetic/live" / name  # dvclive, logged epoch by epoch from the training loop
        summary = json.loads((live / "metrics.json").read_text())
        assert summary["balanced_accuracy"] == pytest.approx(metrics["balanced_accuracy"], abs=1e-6)  # file: 6 dp
        assert set(summary) == {"balanced_accuracy", "macro_auc", "malignant_auc", "ece", "step"}
        curve = pd.read_csv(live / "plots/metrics/val/balanced_accuracy.tsv", sep="\t")
        history = pd.read_csv(root / f"results/synthetic/history/{name}.csv")
        assert curve["step"].tolist() == history["epoch"].tolist()
        assert np.allclose(curve["balanced_accuracy"], history["val_balanced_accuracy"], atol=1e-6)
        assert (live / "plots/sklearn/confusion_matrix.json").is_file()
        compute = training["compute"]  # device, precision (and why), layout: recorded, and shown on the page
        assert compute["device"] == training["device"] and compute["precision"] in {"float32", "bfloat16"}
        assert result["device"].startswith(f"{compute['device']}, {compute['precision']}")
        if params.backbone_variant(name).tta:
            tta = read_predictions(folder / "predictions_tta.csv", classes)
            assert "tta_balanced_accuracy" in metrics
            same = pred["split"] == "train"  # TTA scores val/test; train rows keep the single view
            assert np.allclose(tta.loc[same, "p_nv"], pred.loc[same, "p_nv"])
            assert not np.allclose(tta.loc[~same, "p_nv"], pred.loc[~same, "p_nv"])
    assert (root / "results/synthetic/variants/ft/model.pt").is_file()
    assert (root / "results/synthetic/variants/probe_tta/head.pt").is_file()


def test_probe_training_is_deterministic(tiny_project):
    from lesionlab.models.transfer import train_probe

    root, params = tiny_project
    path = root / "results/synthetic/variants/probe_mlp/predictions.csv"
    train_probe(root, params, "probe_mlp", progress=False)
    before = path.read_bytes()
    train_probe(root, params, "probe_mlp", progress=False)
    assert path.read_bytes() == before


def _write_images(folder: Path, table: pd.DataFrame, root: Path) -> pd.DataFrame:
    """Copies of a few dataset images in other formats and sizes, plus a corrupt file."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (_, row) in enumerate(table.head(6).iterrows()):
        im = Image.open(root / row["path"]).convert("RGB")
        if i % 3 == 1:
            im = im.resize((300, 200))
            name = f"img{i}.png"
        elif i % 3 == 2:
            im = im.convert("L")
            name = f"img{i}.bmp"
        else:
            name = f"img{i}.jpg"
        im.save(folder / name)
        rows.append({"path": name, "label": {"mel": "melanoma", "nv": "nevus"}.get(row["label"], row["label"])})
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    rows.append({"path": "broken.jpg", "label": "nv"})
    rows.append({"path": "missing.jpg", "label": "nv"})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("variant", ["ft", "probe_tta"])
def test_predict_command_end_to_end(tiny_project, variant, tmp_path):
    root, params = tiny_project
    from lesionlab.models.transfer import train_finetune, train_probe

    if not (root / "results/synthetic/variants" / variant / "training.json").is_file():
        (train_finetune if variant == "ft" else train_probe)(root, params, variant, progress=False)
    table = pd.read_csv(root / "results/synthetic/prepared/dataset.csv", dtype=str, keep_default_na=False)
    inputs = _write_images(tmp_path / "images", table, root)
    inputs.to_csv(tmp_path / "images" / "inputs.csv", index=False)
    env = {**os.environ, "LESIONLAB_ROOT": str(root), "PYTHONPATH": str(REPO / "src")}
    out = tmp_path / "out" / "pred.csv"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lesionlab",
            "predict",
            variant,
            str(tmp_path / "images" / "inputs.csv"),
            "--out",
            str(out),
            "--tta",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    pred = pd.read_csv(out)
    assert len(pred) == 6  # the two bad rows are skipped, the batch goes on
    assert pred["uncertain"].isin([True, False]).all() and "uncertain (max p <" in proc.stdout
    pcols = [c for c in pred.columns if c.startswith("p_")]
    assert np.allclose(pred[pcols].sum(axis=1), 1, atol=1e-4)
    skipped = pd.read_csv(out.with_name("pred.skipped.csv"))
    assert sorted(Path(p).name for p in skipped["path"]) == ["broken.jpg", "missing.jpg"]
    assert "broken.jpg" in proc.stdout and "missing.jpg" in proc.stdout
    metrics = json.loads(out.with_name("pred.metrics.json").read_text())
    assert metrics["n_images"] == 6 and 0 <= metrics["accuracy"] <= 1
    assert set(pred["label"]) <= set(table["label"])  # "melanoma", "nevus" mapped to mel, nv
    # a folder works too (no labels: predictions only)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lesionlab",
            "predict",
            variant,
            str(tmp_path / "images"),
            "--out",
            str(tmp_path / "folder.csv"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(pd.read_csv(tmp_path / "folder.csv")) == 6 and not (tmp_path / "folder.metrics.json").exists()


def test_predict_names_an_untrained_variant(tiny_project, tmp_path):
    root, _ = tiny_project
    env = {**os.environ, "LESIONLAB_ROOT": str(root), "PYTHONPATH": str(REPO / "src")}
    (tmp_path / "a.png").write_bytes(b"")
    proc = subprocess.run(
        [sys.executable, "-m", "lesionlab", "predict", "nope", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and "variant 'nope'" in proc.stderr and "has not been trained" in proc.stderr


KERAS_FINETUNE = """
import json, sys
from pathlib import Path
from lesionlab.config import load_params
from lesionlab.models.transfer import train_finetune
root = Path(sys.argv[1])
result = train_finetune(root, load_params(root / "params.yaml"), "kft", progress=False)
print(json.dumps({"device": result["device"], "epochs": len(result["history"])}))
"""


def test_keras_backbone_finetunes_and_predicts(tiny_project, tmp_path):
    """A Keras backbone (random initialisation, stated as such) through the same stage and `lesionlab predict`."""
    root, params = tiny_project
    env = {**os.environ, "LESIONLAB_ROOT": str(root), "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run(
        [sys.executable, "-c", KERAS_FINETUNE, str(root)], env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = root / "results/synthetic/variants/kft"
    classes = tuple(json.loads((root / "results/synthetic/prepared/summary.json").read_text())["classes"])
    read_predictions(folder / "predictions.csv", classes)
    read_predictions(folder / "predictions_tta.csv", classes)
    training = json.loads((folder / "training.json").read_text())
    assert training["framework"] == "keras" and training["weights"]["source"] == "random initialisation"
    metrics = json.loads((root / "results/synthetic/metrics/kft.json").read_text())
    assert 0 < metrics["n_trainable_params"] < metrics["n_params"]  # partial: most of the backbone frozen
    assert "tta_macro_auc" in metrics
    table = pd.read_csv(root / "results/synthetic/prepared/dataset.csv", dtype=str, keep_default_na=False)
    inputs = _write_images(tmp_path / "images", table, root)
    inputs.to_csv(tmp_path / "images" / "inputs.csv", index=False)
    out = tmp_path / "keras.csv"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lesionlab",
            "predict",
            "kft",
            str(tmp_path / "images" / "inputs.csv"),
            "--out",
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    pred = pd.read_csv(out)
    assert len(pred) == 6 and (pred["predicted"].isin(classes)).all()


KERAS_PROBE = """
import json, os, sys
from pathlib import Path
import h5py
from keras.src.legacy.saving import legacy_h5_format
from lesionlab.models.backbones import backbone_spec
from lesionlab.config import load_params
from lesionlab.models.keras_common import load_keras as _keras
from lesionlab.models.transfer import embed_backbone
root = Path(sys.argv[1])
params = load_params(root / "params.yaml")
keras = _keras(0, params.compute.keras_threads)  # the stage's thread count: TensorFlow fixes it on first use
spec = backbone_spec("keras_mobilenet_v2")
fake = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3), pooling="avg")
target = Path(os.environ["KERAS_HOME"]) / "models" / spec.weights_file(32)
target.parent.mkdir(parents=True)
with h5py.File(target, "w") as fh:
    legacy_h5_format.save_weights_to_hdf5_group(fh, fake)
embed_backbone(root, params, "keras_mobilenet_v2", progress=False)
"""

PROBE = """
import json, sys
from pathlib import Path
from lesionlab.config import load_params
from lesionlab.models.transfer import train_probe
root = Path(sys.argv[1])
result = train_probe(root, load_params(root / "params.yaml"), "kprobe", progress=False)
print(json.dumps({"weights": result["weights"]}))
"""


def test_keras_backbone_embeds_for_a_probe_and_predicts(tiny_project, tmp_path):
    """embed@ with a Keras backbone (weights from a temporary Keras cache), a probe on it, and predict."""
    root, _ = tiny_project
    env = {
        **os.environ,
        "LESIONLAB_ROOT": str(root),
        "PYTHONPATH": str(REPO / "src"),
        "KERAS_HOME": str(tmp_path / "keras"),
        "LESIONLAB_OFFLINE": "1",
    }
    # one framework per process, as in the pipeline: embed@ (TensorFlow), then probe@ (PyTorch)
    for script in (KERAS_PROBE, PROBE):
        proc = subprocess.run(
            [sys.executable, "-c", script, str(root)], env=env, capture_output=True, text=True, timeout=900
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
    weights = json.loads(proc.stdout.strip().splitlines()[-1])["weights"]
    assert weights["source"] == "keras cache" and len(weights["sha256"]) == 64
    features = np.load(root / "results/synthetic/embeddings/keras_mobilenet_v2/features.npy")
    assert features.shape[1:] == (N_VIEWS, 1280)
    table = pd.read_csv(root / "results/synthetic/prepared/dataset.csv", dtype=str, keep_default_na=False)
    inputs = _write_images(tmp_path / "images", table, root)
    inputs.to_csv(tmp_path / "images" / "inputs.csv", index=False)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lesionlab",
            "predict",
            "kprobe",
            str(tmp_path / "images" / "inputs.csv"),
            "--out",
            str(tmp_path / "kprobe.csv"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(pd.read_csv(tmp_path / "kprobe.csv")) == 6


@pytest.mark.slow
def test_the_finetune_command_trains_data_parallel_and_rank_0_writes(tiny_project):
    """`torchrun --nproc_per_node 2 -m lesionlab finetune`: DDP on gloo, the stage's outputs written once."""
    root, params = tiny_project
    from test_distributed import _torchrun

    proc = _torchrun("-m", "lesionlab", "finetune", "--variant", "ft", cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = root / "results/synthetic/variants/ft"
    training = json.loads((folder / "training.json").read_text())
    assert "DDP over 2 processes (gloo)" in training["compute"]["reason"]
    assert (folder / "model.pt").is_file() and (folder / "predictions.csv").is_file()
    metrics = json.loads((root / "results/synthetic/metrics/ft.json").read_text())
    assert 0 <= metrics["balanced_accuracy"] <= 1
    assert proc.stdout.count("best epoch") == 1  # one summary line: rank 0's
