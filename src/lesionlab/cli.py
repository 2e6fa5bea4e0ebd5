"""``lesionlab`` / ``python -m lesionlab``: the commands dvc.yaml runs.

Every command validates params.yaml first, so a typo fails before any work.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lesionlab.config import ParamsError, find_project_root, load_params
from lesionlab.contracts import ContractError
from lesionlab.datasets import DatasetError


def _check_params(args) -> int:
    params = load_params(args.params)
    print(f"{args.params or 'params.yaml'}: OK (dataset {params.dataset!r}, variants {list(params.variants)})")
    return 0


def _prepare(args) -> int:
    from lesionlab.prepare import prepare

    root = find_project_root()
    params = load_params(root / "params.yaml")
    prepare(params, root, workers=args.workers)
    return 0


def _run(args) -> int:
    from lesionlab.notebooks import run_notebook

    root = find_project_root()
    params = load_params(root / "params.yaml")
    if args.stage == "train":
        if not args.variant:
            raise ParamsError("`lesionlab run train` needs --variant NAME")
        params.variant(args.variant)  # unknown variant -> ParamsError naming the defined ones
    run_notebook(root, params.dataset, args.stage, args.variant)
    return 0


def _generate(args) -> int:
    from lesionlab import synthetic

    params = load_params(args.params)
    cfg = synthetic.SyntheticConfig(**params.synthetic.model_dump())
    out = synthetic.generate(Path(args.out), cfg, seed=params.base.seed if args.seed is None else args.seed,
                             workers=args.workers)
    print(f"synthetic dataset written to {out}")
    return 0


def _leaderboard(args) -> int:
    """Print a leaderboard.csv as the Markdown table the README shows."""
    import pandas as pd

    from lesionlab.compare import METRIC_LABELS, format_ci

    board = pd.read_csv(args.csv)
    metrics = [m for m in METRIC_LABELS if m in board.columns]
    print("| variant | " + " | ".join(METRIC_LABELS[m] for m in metrics) + " |")
    print("|---|" + "---|" * len(metrics))
    for _, row in board.iterrows():
        cells = [format_ci(row[m], row[f"{m}_lo"], row[f"{m}_hi"]) if m == "balanced_accuracy"
                 else f"{row[m]:.3f}" for m in metrics]
        print(f"| `{row['variant']}` | " + " | ".join(cells) + " |")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lesionlab", description=__doc__.splitlines()[0]
                                     + " Research and education only: not for diagnosis.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("check-params", help="validate params.yaml and exit")
    p.add_argument("--params", default=None, help="path to params.yaml (default: the project's)")
    p.set_defaults(func=_check_params)
    p = sub.add_parser("prepare", help="dataset -> results/<ds>/prepared (table + image cache)")
    p.add_argument("--workers", type=int, default=2)
    p.set_defaults(func=_prepare)
    p = sub.add_parser("run", help="execute a stage notebook with papermill and render its HTML report")
    p.add_argument("stage", choices=["eda", "split", "train", "compare"])
    p.add_argument("--variant", help="variant name (train only)")
    p.set_defaults(func=_run)
    p = sub.add_parser("generate-synthetic", help="write the synthetic dataset in HAM10000's layout")
    p.add_argument("out")
    p.add_argument("--params", default=None)
    p.add_argument("--seed", type=int, default=None, help="override base.seed")
    p.add_argument("--workers", type=int, default=2)
    p.set_defaults(func=_generate)
    p = sub.add_parser("leaderboard", help="print a leaderboard.csv as a Markdown table")
    p.add_argument("csv", nargs="?", default="reports/synthetic/leaderboard.csv")
    p.set_defaults(func=_leaderboard)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ParamsError, DatasetError, ContractError, FileNotFoundError) as err:
        print(f"lesionlab {args.command}: error: {err}", file=sys.stderr)
        return 2
