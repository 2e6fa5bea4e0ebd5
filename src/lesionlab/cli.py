"""``lesionlab`` / ``python -m lesionlab``: the commands dvc.yaml runs.

Every command validates params.yaml first, so a typo fails before any work.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from lesionlab.config import ParamsError, find_project_root, load_params

#: what `check-params --stamp` writes: the same bytes whatever params.yaml holds, so that the stages depending on
#: the stamp re-run for their own params only (DVC compares its hash), never because another section changed
STAMP_TEXT = "params.yaml passed `lesionlab check-params` (dvc.yaml stage check_params, which every stage follows)\n"


def _check_params(args) -> int:
    params = load_params(args.params)
    print(
        f"{args.params or 'params.yaml'}: OK (dataset {params.dataset!r}, variants {list(params.variants)}, "
        f"probes {list(params.probes)}, finetunes {list(params.finetunes)}, tabulars {list(params.tabulars)}, "
        f"ensembles {list(params.ensembles)})"
    )
    if args.stamp:
        Path(args.stamp).parent.mkdir(parents=True, exist_ok=True)
        Path(args.stamp).write_text(STAMP_TEXT)
    return 0


def _prepare(args) -> int:
    from lesionlab.data.prepare import prepare

    root = find_project_root()
    params = load_params(root / "params.yaml")
    prepare(params, root, workers=args.workers)
    return 0


def _prepare_external(args) -> int:
    from lesionlab.evaluation.external import prepare_external

    root = find_project_root()
    params = _external_params(root, args.name)
    prepare_external(params, root, args.name, workers=args.workers)
    return 0


def _score_external(args) -> int:
    from lesionlab.evaluation.external import score_external

    root = find_project_root()
    params = _external_params(root, args.name)
    score_external(params, root, args.name)
    return 0


def _external_params(root: Path, name: str):
    params = load_params(root / "params.yaml")
    if name not in params.external:
        raise ParamsError(f"{name!r} is not one of params.yaml's external test sets {params.external}")
    return params


def _run(args) -> int:
    from lesionlab.models import families
    from lesionlab.pipeline.notebooks import STAGES, run_notebook

    if args.stage not in STAGES:
        raise ParamsError(f"`lesionlab run`: unknown stage {args.stage!r}; stages: {list(STAGES)}")
    root = find_project_root()
    params = load_params(root / "params.yaml")
    served = families.for_stage(args.stage)
    if served:  # a model family's stage: --variant names one of its rows (unknown -> ParamsError naming them)
        sections = " or ".join(f"{f.section}:" for f in served)
        if not args.variant:
            raise ParamsError(f"`lesionlab run {args.stage}` needs --variant NAME (a row of {sections})")
        params.row_config(args.variant, *(f.kind for f in served))
        if args.seed is not None:
            return _replicate(root, params, args)
    elif args.seed is not None:
        raise ParamsError(f"`lesionlab run {args.stage}`: --seed is for the model stages (a seed replicate)")
    if args.stage == "explain" and args.variant:
        raise ParamsError("`lesionlab run explain` explains every model of explain.variants: no --variant")
    run_notebook(root, params.dataset, args.stage, args.variant)
    return 0


def _replicate(root: Path, params, args) -> int:
    """A seed replicate (dvc.yaml's ``<stage>_seed@<row>-<seed>``): the row's trainer, called directly with the run's
    seed and name. No notebook page: the row's page is its first run's, and every run's numbers are on the
    comparison page (a notebook and its kernel would cost each of the ~30 replicates of the default seconds)."""
    import time

    from lesionlab.models import families

    run_params, name = params.replicate(args.variant, args.seed)  # a seed not in base.replicate_seeds: ParamsError
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ notices stay out of the log, as in a notebook
    started = time.perf_counter()
    print(f"[{args.stage}@{name}] seed replicate of {args.variant}, seed {args.seed}", flush=True)
    families.of_row(params, args.variant).call("fit", root, run_params, name)
    print(f"[{args.stage}@{name}] done in {time.perf_counter() - started:.1f} s", flush=True)
    return 0


def _site(args) -> int:
    from lesionlab.reporting.site import build_site

    root = find_project_root()
    build_site(root, load_params(root / "params.yaml"))
    return 0


def _embed(args) -> int:
    from lesionlab.models.transfer import embed_backbone

    root = find_project_root()
    params = load_params(root / "params.yaml")
    if args.backbone not in params.embed.backbones:
        raise ParamsError(f"backbone {args.backbone!r} is not in embed.backbones {params.embed.backbones}")
    embed_backbone(root, params, args.backbone)
    return 0


def _finetune(args) -> int:
    """One fine-tune row trained without its notebook: the command to start under torchrun (data-parallel)."""
    from lesionlab.models.transfer import train_finetune

    root = find_project_root()
    params = load_params(root / "params.yaml")
    if args.variant not in params.finetunes:
        raise ParamsError(f"finetune row {args.variant!r} is not in finetunes: {sorted(params.finetunes)}")
    train_finetune(root, params, args.variant)
    return 0


def _backbones(args) -> int:
    """Print the backbone registry and where each one's ImageNet weights would be found."""
    from lesionlab.models.backbones import BACKBONES
    from lesionlab.models.weights import WeightsError, resolve_weights

    root = find_project_root()
    for spec in BACKBONES.values():
        try:
            found = resolve_weights(spec, "imagenet", spec.input_size, root, allow_download=False).describe()
        except WeightsError:
            found = f"not on this machine (fetch {spec.url(spec.input_size)})"
        print(
            f"{spec.name}  ({spec.framework}: {spec.builder}; native {spec.input_size} px; embedding "
            f"{spec.features}; licence {spec.licence})\n    preprocessing: {spec.preprocessing}\n    weights: {found}\n"
        )
    return 0


def _predict(args) -> int:
    from lesionlab.models.predict import predict_command

    return predict_command(args)


def _generate(args) -> int:
    from lesionlab.data import synthetic

    params = load_params(args.params)
    cfg = synthetic.SyntheticConfig(**params.synthetic.model_dump())
    out = synthetic.generate(
        Path(args.out), cfg, seed=params.base.seed if args.seed is None else args.seed, workers=args.workers
    )
    print(f"synthetic dataset written to {out}")
    return 0


def _datasets(args) -> int:
    """Print the dataset registry: the built-in sources and every folder under data/ with a card."""
    from lesionlab.data.datasets import dataset_info, registered_names

    root = find_project_root()
    for name in registered_names(root):
        info = dataset_info(name, root)
        classes = ", ".join(info.classes) if info.classes else "the labels found"
        card = f"; card {info.card}" if info.card else ""
        mapped = f"\n    label_map: {info.label_map}" if info.label_map else ""
        print(
            f"{info.name}  ({info.raw_dir or 'generated'}; classes: {classes}; licence: {info.licence}{card}){mapped}\n"
            f"    {info.description}\n    files: {info.files}\n    cite: {info.citation}\n"
        )
    return 0


def _import_data(args) -> int:
    """Check a download against its layout, then copy (or link) it to data/<dataset>/ (datasets.lay_out: refused
    when one folder holds the other or the download holds unsafe links; swapped in only once complete)."""
    from lesionlab.data.datasets import (
        DatasetError,
        check_not_nested,
        dataset_info,
        import_dataset,
        lay_out,
        missing_files,
    )

    root = find_project_root()
    info = dataset_info(args.dataset, root, card=args.card)
    if args.card and args.mode == "symlink":
        raise DatasetError(
            "--card writes the card into data/<dataset>/: use --mode copy or hardlink, not a link to your download"
        )
    if info.raw_dir is None:
        raise DatasetError(f"{info.name} is generated by the project; there is nothing to import")
    source = Path(args.folder).resolve()
    target = root / info.raw_dir
    check_not_nested(source, target)
    table = import_dataset(info, source)  # a layout it cannot read fails here, before anything is copied
    outside = int(table["row_problem"].ne("").sum())
    print(
        f"{source}: {len(table)} rows, {table['lesion_id'].nunique()} lesions, labels "
        f"{table['label'].value_counts().to_dict()}; {missing_files(table)} listed image(s) without a file"
        + (f"; {outside} row(s) with a path outside the folder (unusable)" if outside else "")
    )
    lay_out(source, target, args.mode, card=args.card, force=args.force)
    print(
        f"{args.mode}: {source} -> {target.relative_to(root)}\nnext:\n  dvc add data\n"
        f"  dvc exp run -S dataset={info.name} -S dataset_source={info.source}"
        "   (or edit params.yaml, then dvc repro)\n"
        f"  or, as an external test set of the current dataset: dvc exp run -S 'external=[{info.name}]'"
    )
    return 0


def _deps(args) -> int:
    """Check (or rewrite) each dvc.yaml stage's code dependency (its fingerprint), or write the fingerprints."""
    from lesionlab.pipeline import stagedeps

    root = find_project_root()
    if args.fingerprints:  # the pipeline's `code` stage
        changed = stagedeps.write_fingerprints(root)
        written = f"{len(changed)} stage fingerprint(s) written, the others unchanged"
        print(f"[code] {stagedeps.FINGERPRINTS}/: {written}", flush=True)
        return 0
    changes = stagedeps.check(root) if args.check else stagedeps.rewrite(root)
    for stage, (missing, extra) in changes.items():
        if stage in stagedeps.SECTIONS:
            print(f"{stage}: {len(missing) + len(extra)} definition(s) differ from params.yaml's rows")
            continue
        print(
            f"{stage}: "
            + "; ".join(
                part
                for part in (
                    f"lacks the dependency {', '.join(missing)}" if missing else "",
                    f"must not depend on {', '.join(extra)} (its code fingerprint covers them)" if extra else "",
                )
                if part
            )
        )
    if args.check and changes:
        print(
            f"dvc.yaml: {len(changes)} stage(s) out of date: run `python -m lesionlab deps` to rewrite them",
            file=sys.stderr,
        )
        return 1
    print(
        "dvc.yaml: every stage depends on its code fingerprint (results/code/<stage>.txt: the modules it can import)"
        + (f" ({len(changes)} stage(s) rewritten)" if changes and not args.check else "")
    )
    return 0


def _docs(args) -> int:
    """Rewrite (or check) the tables in README.md and docs/ that are generated from committed result files."""
    from lesionlab.reporting import doctables

    root = find_project_root()
    stale = doctables.update(root, check=args.check)
    if args.check and stale:
        print(f"generated tables out of date in {', '.join(stale)}: run `python -m lesionlab docs`", file=sys.stderr)
        return 1
    print("docs: every generated table matches its file" + (f" ({', '.join(stale)} rewritten)" if stale else ""))
    return 0


def _leaderboard(args) -> int:
    """Print a leaderboard.csv as the Markdown table the README shows."""
    import pandas as pd

    from lesionlab.evaluation.compare import format_ci
    from lesionlab.evaluation.metrics import METRIC_LABELS
    from lesionlab.pipeline.contracts import ContractError

    board = pd.read_csv(args.csv)
    metrics = [m for m in METRIC_LABELS if m in board.columns]
    if not metrics:
        raise ContractError(f"{args.csv}: no leaderboard metric columns (expected some of {list(METRIC_LABELS)})")
    with_ci = "balanced_accuracy" if "balanced_accuracy" in metrics else metrics[0]  # the CI of the main metric
    print("| variant | " + " | ".join(METRIC_LABELS[m] for m in metrics) + " |")
    print("|---|" + "---|" * len(metrics))
    for _, row in board.iterrows():
        cells = [
            format_ci(row[m], row[f"{m}_lo"], row[f"{m}_hi"]) if m == with_ci else f"{row[m]:.3f}" for m in metrics
        ]
        print(f"| `{row['variant']}` | " + " | ".join(cells) + " |")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lesionlab", description=__doc__.splitlines()[0] + " Research and education only: not for diagnosis."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("check-params", help="validate params.yaml and exit")
    p.add_argument("--params", default=None, help="path to params.yaml (default: the project's)")
    p.add_argument(
        "--stamp",
        default=None,
        help="write this file when valid (dvc.yaml's first stage: every other "
        "stage depends on it, so a bad params.yaml stops `dvc repro` before DVC removes any output)",
    )
    p.set_defaults(func=_check_params)
    p = sub.add_parser("prepare", help="dataset -> results/<ds>/prepared (table + image cache)")
    p.add_argument("--workers", type=int, default=2)
    p.set_defaults(func=_prepare)
    p = sub.add_parser(
        "prepare-external",
        help="an external test set (params.yaml external:) -> "
        "results/<ds>/external/<name>/prepared, decoded as the main dataset",
    )
    p.add_argument("name")
    p.add_argument("--workers", type=int, default=2)
    p.set_defaults(func=_prepare_external)
    p = sub.add_parser(
        "score-external",
        help="every trained model and ensemble on an external test set -> results/<ds>/external/<name>/predictions",
    )
    p.add_argument("name")
    p.set_defaults(func=_score_external)
    p = sub.add_parser("run", help="execute a stage notebook with papermill (results/<ds>/notebooks/)")
    p.add_argument(
        "stage", help="eda, split, a model family's stage (train, backbone, tabular, ensemble, ...), explain or compare"
    )
    p.add_argument(
        "--variant",
        help="a row of the stage's family (train: variants:, backbone: probes: or finetunes:, "
        "tabular: tabulars:, ensemble: ensembles:, a new family: its section); explain takes none (it explains "
        "every model of explain.variants)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="a seed of base.replicate_seeds: train the row's seed replicate <variant>.seed<N>, directly, without "
        "a notebook page (dvc.yaml's <stage>_seed@<variant>-<N>); default: the first run, with base.seed",
    )
    p.set_defaults(func=_run)
    p = sub.add_parser("site", help="render every executed notebook + reports/<ds>/index.html (navigation, provenance)")
    p.set_defaults(func=_site)
    p = sub.add_parser("embed", help="cache a frozen backbone's embeddings of every image (8 views), for probes")
    p.add_argument("backbone", help="a backbone listed in embed.backbones")
    p.set_defaults(func=_embed)
    p = sub.add_parser(
        "finetune",
        help="train one finetunes: row outside its notebook (same outputs); under `torchrun --nproc_per_node N` "
        "it trains data-parallel (DDP: docs/scaling.md)",
    )
    p.add_argument("--variant", required=True, help="a row of finetunes:")
    p.set_defaults(func=_finetune)
    p = sub.add_parser("backbones", help="list the backbone registry and where each one's weights are found")
    p.set_defaults(func=_backbones)
    p = sub.add_parser(
        "predict",
        help="a trained variant or ensemble + an image folder or CSV of paths -> predictions "
        "with an 'uncertain' flag (+ metrics when labelled)",
    )
    p.add_argument(
        "variant",
        help="a trained variant or ensemble of the dataset (results/<dataset>/variants/<name>, "
        "results/<dataset>/ensembles/<name>); metadata models need age/sex/site columns in the CSV",
    )
    p.add_argument("inputs", help="a folder of images (searched recursively) or a CSV with a path column (+ label)")
    p.add_argument("--out", default="predictions.csv", help="where to write the predictions (default predictions.csv)")
    p.add_argument("--dataset", default=None, help="which dataset's variant (default: params.yaml's dataset)")
    p.add_argument("--tta", action="store_true", help="average over the 8 dihedral views of each image")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument(
        "--max-prob-below",
        type=float,
        default=None,
        help="flag 'uncertain' when the top probability is below this (default: params.yaml uncertainty:)",
    )
    p.add_argument(
        "--entropy-above",
        type=float,
        default=None,
        help="flag 'uncertain' when entropy / log(k) is above this (default: params.yaml uncertainty:)",
    )
    p.set_defaults(func=_predict)
    p = sub.add_parser("generate-synthetic", help="write the synthetic dataset in HAM10000's layout")
    p.add_argument("out")
    p.add_argument("--params", default=None)
    p.add_argument("--seed", type=int, default=None, help="override base.seed")
    p.add_argument("--workers", type=int, default=2)
    p.set_defaults(func=_generate)
    p = sub.add_parser("datasets", help="list the registered datasets: layout, classes, licence, citation")
    p.set_defaults(func=_datasets)
    p = sub.add_parser("import-data", help="check a download's layout and lay it out under data/<dataset>/")
    p.add_argument("dataset", help="registered dataset name (see `lesionlab datasets`), or a new name with --card")
    p.add_argument("folder", help="the downloaded (unzipped) folder")
    p.add_argument(
        "--card",
        help="a dataset card (layout, label_map or classes; docs/datasets.md), checked and "
        "copied to data/<dataset>/dataset.yaml: a dataset of your own needs no code",
    )
    p.add_argument(
        "--mode",
        choices=["copy", "hardlink", "symlink"],
        default="copy",
        help="copy (default), hardlink (same file system, no extra space) or symlink (DVC then "
        "tracks the link target's files only if the link is resolved: prefer copy/hardlink)",
    )
    p.add_argument("--force", action="store_true", help="replace an existing data/<dataset>")
    p.set_defaults(func=_import_data)
    p = sub.add_parser(
        "deps",
        help="make each dvc.yaml stage depend on its code fingerprint results/code/<stage>.txt (the md5s of "
        "the modules its command can import) and write the fingerprints; --check only lists what is out of "
        "line and fails; --fingerprints only writes them (the pipeline's first stage, `code`)",
    )
    group = p.add_mutually_exclusive_group()
    group.add_argument("--check", action="store_true")
    group.add_argument("--fingerprints", action="store_true")
    p.set_defaults(func=_deps)
    p = sub.add_parser(
        "docs",
        help="rewrite the tables in README.md and docs/*.md generated from committed result "
        "files (<!-- table: ... --> blocks); --check only reports the stale ones and fails",
    )
    p.add_argument("--check", action="store_true")
    p.set_defaults(func=_docs)
    p = sub.add_parser(
        "leaderboard",
        help="print a leaderboard CSV (leaderboard.csv, leaderboard_binary.csv, "
        "leaderboard_triage.csv) as a Markdown table",
    )
    p.add_argument("csv", nargs="?", default="reports/synthetic/leaderboard.csv")
    p.set_defaults(func=_leaderboard)
    p = sub.add_parser(
        "verify",
        help="does a fresh run reproduce the committed findings? Passes when every row of the fresh "
        "reports/<ds>/leaderboard.csv lies inside its committed CI (seeds and lesions); lists the rows that do not",
    )
    p.add_argument("--dataset", default=None, help="default: params.yaml's dataset")
    p.add_argument("--reference", default=None, help="a leaderboard CSV to check against (default: the committed one)")
    p.add_argument("--rev", default="HEAD", help="the git revision whose committed leaderboard is the reference")
    p.add_argument("--fresh", default=None, help="the fresh leaderboard CSV (default: reports/<ds>/leaderboard.csv)")
    p.add_argument("--metrics", nargs="+", default=None, help="default: balanced_accuracy macro_auc malignant_auc")
    p.set_defaults(func=_verify)
    p = sub.add_parser(
        "repro",
        help="`dvc repro` with the stale light model stages (CNN and probe runs, metadata models) run side by "
        "side in --jobs lanes sharing the DVC cache; same outputs and dvc.lock as a plain `dvc repro`",
    )
    p.add_argument("--jobs", type=int, default=2, help="lanes (default 2; 1 = a plain `dvc repro`)")
    p.add_argument("--keep", action="store_true", help="keep the lanes' copies in .dvc/tmp/lanes/ (to debug)")
    p.set_defaults(func=_repro)
    return parser


def _repro(args) -> int:
    from lesionlab.pipeline.lanes import repro

    if args.jobs < 1:
        raise ParamsError(f"`lesionlab repro --jobs {args.jobs}`: at least 1 lane")
    return repro(find_project_root(), args.jobs, keep=args.keep)


def _verify(args) -> int:
    import pandas as pd

    from lesionlab.evaluation import verify

    root = find_project_root()
    dataset = args.dataset or load_params(root / "params.yaml").dataset
    fresh_path = Path(args.fresh) if args.fresh else root / "reports" / dataset / "leaderboard.csv"
    if not fresh_path.is_file():
        raise FileNotFoundError(f"{fresh_path}: no fresh leaderboard; run `dvc repro` first")
    reference = pd.read_csv(args.reference) if args.reference else verify.committed_leaderboard(root, dataset, args.rev)
    table = verify.verify(reference, pd.read_csv(fresh_path), tuple(args.metrics or verify.VERIFIED))
    if table.empty:
        raise ParamsError(f"verify: no metric of {args.metrics or verify.VERIFIED} with a CI in the reference")
    print(verify.report(table))
    return 0 if verify.summary(table)["passed"] else 1


def _user_errors() -> tuple[type[Exception], ...]:
    """Errors that mean bad input (params, data, contracts, weights): imported only when one was raised, so a
    command does not pay for pandas before it needs it."""
    from lesionlab.data.datasets import DatasetError
    from lesionlab.models.backbones import BackboneError
    from lesionlab.paths import UnsafeName
    from lesionlab.pipeline.contracts import ContractError
    from lesionlab.pipeline.guard import StageBusy
    from lesionlab.pipeline.lanes import LaneError

    return (
        ParamsError,
        DatasetError,
        ContractError,
        BackboneError,
        FileNotFoundError,
        UnsafeName,
        StageBusy,
        LaneError,
    )


def _stage_name(args) -> str:
    """The name a command's timing record carries: the dvc.yaml stage (``train@cnn_aug``, ``embed@efficientnet_lite0``,
    ``site``), except that probe@ and finetune@ stages both run ``backbone@<name>``."""
    if args.command == "run":
        if not args.variant:
            return args.stage
        return f"{args.stage}@{args.variant}" + (f".seed{args.seed}" if args.seed is not None else "")
    if args.command == "embed":
        return f"embed@{args.backbone}"
    if args.command in ("prepare-external", "score-external"):
        return f"{'external_prepare' if args.command == 'prepare-external' else 'external'}@{args.name}"
    return args.command


#: the commands dvc.yaml's stages run (guarded: they die with their dvc, and never run twice at once)
STAGE_COMMANDS = ("prepare", "prepare-external", "score-external", "run", "embed", "site")


def _guarded(args):
    """Run a stage command under the process hygiene of :mod:`lesionlab.pipeline.guard`."""
    from lesionlab.pipeline import guard

    if os.environ.get("DVC_STAGE"):  # started by dvc: end with it (an orphan would keep writing the workspace)
        guard.die_with_parent()
    with guard.stage_lock(find_project_root(), _stage_name(args)):
        return args.func(args)


#: modules whose interpreter teardown is slow (thread pools, kernels' registries): ~1.2-1.4 s per process here
HEAVY_MODULES = ("tensorflow", "torch")


def quick_exit(status: int) -> None:
    """End a process that has loaded TensorFlow or PyTorch now, without the interpreter's teardown of them.

    Everything a command writes is written and closed before it returns (``with`` blocks, ``np.save``,
    ``model.save``); what is left at exit is the frameworks' own teardown, ~1.3 s per process here and ~60 s over
    a cold default pipeline. This flushes the standard streams and logging, then ``os._exit(status)``. A process
    without either framework returns and exits the normal way (its teardown is quick), and so does any process
    with ``LESIONLAB_SLOW_EXIT=1`` set (to debug an atexit handler)."""
    if os.environ.get("LESIONLAB_SLOW_EXIT") == "1" or not any(m in sys.modules for m in HEAVY_MODULES):
        return
    import logging

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(0 if status is None else status if isinstance(status, int) else 1)


def main(argv: list[str] | None = None) -> int:
    from lesionlab.pipeline import timing

    args = build_parser().parse_args(argv)
    status = 1
    try:
        status = _guarded(args) if args.command in STAGE_COMMANDS else args.func(args)
        return status
    except Exception as err:  # noqa: BLE001 - a user error is reported in one line, anything else re-raised
        if not isinstance(err, _user_errors()):
            raise
        print(f"lesionlab {args.command}: error: {err}", file=sys.stderr)
        status = 2
        return status
    finally:
        if args.command != "repro":  # its stages record themselves
            timing.record(args.command, _stage_name(args), status)  # only with $LESIONLAB_TIMINGS (tools/bench.py)
