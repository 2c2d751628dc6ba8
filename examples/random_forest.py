"""Train a random forest with lambdamr: its trees are independent tasks, combined by majority vote.

    python -m examples.random_forest --trees 8 --backend local --memory 2048
    python -m examples.random_forest --trees 64 --backend aws --data lending_club.csv
    python -m examples.random_forest --rows 500000      # the synthetic set at the seed's size

Each tree is a scikit-learn ``DecisionTreeClassifier`` grown on its own bootstrap sample,
choosing among a random subset of the features at every split (``max_features``), exactly as
``RandomForestClassifier`` grows its trees. The training data is stored ONCE per job with
``executor.share``; every task reads it from there (once per warm worker). The driver collects
the trees, predicts by majority vote and reports its held-out accuracy next to scikit-learn's
own forest trained with the same parameters.

On AWS the tasks need scikit-learn in the runtime's layer: ``lambdamr deploy --package
scikit-learn``. The driver alone needs pandas, and only to read ``--data``.

Data: ``--data`` takes the Lending Club loan CSV (cleaned by ``load_lending_club``); without
it a deterministic synthetic set of the same kind is generated (``synthetic_dataset``).
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from lambdamr.cli.help import HelpFormatter

# Below this many rows a tree trains in tens of milliseconds, no more than an invocation's own
# overhead, so the automatic plan packs several trees into one task.
ROWS_PER_TASK_AUTO = 20_000


@dataclass(frozen=True)
class Dataset:
    """Features (float32), labels (int8: 1 = bad loan / positive class) and where they came from."""

    X: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    source: str


# --- the Lending Club loan CSV -------------------------------------------------------------

GOOD_STATUSES = frozenset({"Fully Paid", "Current"})
BAD_STATUSES = frozenset({"Charged Off", "Default", "Late (31-120 days)", "Late (16-30 days)", "In Grace Period"})
POLICY_PREFIX = "Does not meet the credit policy. Status:"
# Identifiers, links and free text: no signal a tree can use, or the borrower's own words.
TEXT_COLUMNS = frozenset({"id", "member_id", "url", "desc", "title", "emp_title", "zip_code"})
# Known only after the loan was granted (payments, recoveries, hardship, settlement): they
# would leak the outcome into the features.
# fmt: off
LEAKAGE_COLUMNS = frozenset({
    "total_pymnt", "total_pymnt_inv", "total_rec_prncp", "total_rec_int", "total_rec_late_fee",
    "recoveries", "collection_recovery_fee", "last_pymnt_d", "last_pymnt_amnt", "next_pymnt_d",
    "last_credit_pull_d", "out_prncp", "out_prncp_inv", "pymnt_plan", "last_fico_range_high",
    "last_fico_range_low", "hardship_flag", "debt_settlement_flag",
})
# fmt: on
LEAKAGE_PREFIXES = ("hardship_", "settlement_", "debt_settlement_", "payment_plan_", "orig_projected_")
MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
MONTHS = {name: i for i, name in enumerate(MONTH_NAMES)}
PERCENT = re.compile(r"^\s*-?\d+(\.\d+)?\s*%\s*$")
TERM = re.compile(r"^\s*(\d+)\s+months?\s*$")
MONTH_YEAR = re.compile(r"^\s*([A-Z][a-z]{2})-(\d{4})\s*$")


def loan_target(status: Any) -> float:
    """1 for a bad loan, 0 for a good one, NaN when the status says neither (e.g. "Issued")."""
    if not isinstance(status, str):
        return math.nan
    status = status.strip().removeprefix(POLICY_PREFIX).strip()
    if status in BAD_STATUSES:
        return 1.0
    return 0.0 if status in GOOD_STATUSES else math.nan


def parse_emp_length(value: Any) -> float:
    """Years of employment: "10+ years" -> 10, "< 1 year" -> 0, "n/a" -> NaN."""
    if not isinstance(value, str):
        return math.nan
    if value.strip().startswith("<"):
        return 0.0
    digits = re.search(r"\d+", value)
    return float(digits.group()) if digits else math.nan


def parse_month_year(value: Any) -> float:
    """ "Dec-2011" -> 2011.917 (year and month as one number), anything else -> NaN."""
    match = MONTH_YEAR.match(value) if isinstance(value, str) else None
    if match is None or match.group(1) not in MONTHS:
        return math.nan
    return int(match.group(2)) + MONTHS[match.group(1)] / 12.0


def _all_match(values: Any, pattern: re.Pattern[str]) -> bool:
    present = values.dropna()
    return len(present) > 0 and bool(present.map(lambda v: bool(pattern.match(str(v)))).all())


def text_column_to_numbers(name: str, column: Any) -> Any:
    """The numbers a text column stands for (percent, term, month-year...), or None."""
    import pandas as pd

    if name == "emp_length":
        return column.map(parse_emp_length)
    if _all_match(column, PERCENT):
        return pd.to_numeric(column.str.strip().str.rstrip("%"), errors="coerce")
    if _all_match(column, TERM):
        return pd.to_numeric(column.str.extract(TERM, expand=False), errors="coerce")
    if _all_match(column, MONTH_YEAR):
        return column.map(parse_month_year)
    numbers = pd.to_numeric(column, errors="coerce")
    return numbers if numbers.notna().sum() == column.notna().sum() else None


def _header_skip(path: str) -> int:
    # LendingClub's own downloads start with a line "Notes offered by Prospectus ..." above the
    # header; Kaggle's copy does not.
    with open(path, encoding="utf-8", errors="replace") as handle:
        return 0 if "loan_status" in handle.readline() else 1


def load_lending_club(path: str, max_categories: int = 60) -> Dataset:
    """Read and clean a Lending Club loan CSV into a numeric Dataset.

    Target: 1 = bad (charged off, default, late, in grace period), 0 = good (fully paid,
    current); rows with other statuses (and LendingClub's footer lines) are dropped. Ids, links,
    free text and post-origination (leaking) columns are dropped; "36 months", "10+ years",
    "13.56%" and "Dec-2011" become numbers; other text columns with at most ``max_categories``
    values are one-hot encoded, the rest dropped. Missing numbers become the column's median.
    """
    import pandas as pd

    frame = pd.read_csv(path, skiprows=_header_skip(path), low_memory=False)
    if "loan_status" not in frame.columns:
        raise ValueError(f"{path}: no loan_status column; is this the Lending Club loan CSV?")
    target = frame.pop("loan_status").map(loan_target)
    keep = target.notna().to_numpy()
    frame, target = frame.loc[keep], target[keep]
    dropped = [c for c in frame.columns if c in TEXT_COLUMNS or c in LEAKAGE_COLUMNS or c.startswith(LEAKAGE_PREFIXES)]
    frame = frame.drop(columns=dropped)
    numeric, categorical = {}, []
    for name in frame.columns:
        column = frame[name]
        if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
            numeric[name] = column.astype(float)
            continue
        numbers = text_column_to_numbers(name, column.astype("object"))
        if numbers is not None:
            numeric[name] = numbers.astype(float)
        elif column.nunique() <= max_categories:
            categorical.append(name)
    features = pd.DataFrame(numeric, index=frame.index).dropna(axis="columns", how="all")
    features = features.fillna(features.median())
    if categorical:
        dummies = pd.get_dummies(frame[categorical].astype("object"), prefix_sep="=", dtype=float)
        features = pd.concat([features, dummies], axis="columns")
    return Dataset(
        features.to_numpy(dtype=np.float32),
        target.to_numpy(dtype=np.int8),
        [str(c) for c in features.columns],
        f"Lending Club ({path})",
    )


# --- synthetic data, training and voting ------------------------------------------------------


def synthetic_dataset(rows: int = 100_000, features: int = 40, seed: int = 0) -> Dataset:
    """A deterministic loan-like classification set: about 20 % "bad" (class 1), some noise."""
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n_samples=rows,
        n_features=features,
        n_informative=max(2, features * 3 // 10),
        n_redundant=features // 5,
        weights=[0.8],
        flip_y=0.05,
        class_sep=0.8,
        random_state=seed,
    )
    names = [f"x{i}" for i in range(features)]
    return Dataset(X.astype(np.float32), y.astype(np.int8), names, f"synthetic(rows={rows}, seed={seed})")


@dataclass(frozen=True)
class TreeParams:
    """How each tree grows; the same parameters go to scikit-learn's forest for comparison."""

    max_features: str | float | int = "sqrt"
    max_depth: int | None = None
    min_samples_leaf: int = 1
    criterion: str = "gini"


class InlineShared:
    """Stands in for ``executor.share(...)`` when trees are trained in this process."""

    def __init__(self, value: Any) -> None:
        self.value = value


def bootstrap_weights(rows: int, seed: int) -> np.ndarray:
    """How many times each row is drawn in a bootstrap sample of ``rows`` draws."""
    draws = np.random.default_rng(seed).integers(0, rows, rows)
    return np.bincount(draws, minlength=rows).astype(np.float64)


def train_tree(X: np.ndarray, y: np.ndarray, seed: int, params: TreeParams) -> Any:
    """One tree on a bootstrap sample of (X, y), with random feature subsets at each split."""
    from sklearn.tree import DecisionTreeClassifier

    tree = DecisionTreeClassifier(random_state=seed, **asdict(params))
    # Weights instead of X[sample] avoid copying the data set for every tree (as sklearn does).
    return tree.fit(X, y, sample_weight=bootstrap_weights(len(y), seed))


def train_trees(data: Any, seeds: Sequence[int], params: TreeParams) -> list[Any]:
    """One task: the trees for ``seeds``, trained on the shared ``data.value == (X, y)``."""
    X, y = data.value
    return [train_tree(X, y, seed, params) for seed in seeds]


def tree_seeds(n_trees: int, seed: int) -> list[int]:
    """One independent random seed per tree, derived from the forest's seed."""
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(n_trees)]


def plan_tasks(n_trees: int, trees_per_task: int, seed: int = 0) -> list[list[int]]:
    """The tree seeds of each task, ``trees_per_task`` at a time."""
    if n_trees < 1 or trees_per_task < 1:
        raise ValueError("need at least one tree and at least one tree per task")
    seeds = tree_seeds(n_trees, seed)
    return [seeds[i : i + trees_per_task] for i in range(0, n_trees, trees_per_task)]


def auto_trees_per_task(rows: int, n_trees: int) -> int:
    """One tree per task, or several when trees are cheap (few rows)."""
    return max(1, min(n_trees, math.ceil(ROWS_PER_TASK_AUTO / max(rows, 1))))


class MajorityVoteForest:
    """Trees combined by majority vote (ties go to the smaller class label)."""

    def __init__(self, trees: Sequence[Any], classes: np.ndarray) -> None:
        if not trees:
            raise ValueError("a forest needs at least one tree")
        self.trees = list(trees)
        self.classes_ = np.asarray(classes)

    def votes(self, X: np.ndarray) -> np.ndarray:
        """Votes per class (n_classes x n_samples)."""
        counts = np.zeros((len(self.classes_), len(X)), dtype=np.int32)
        columns = np.arange(len(X))
        for tree in self.trees:
            counts[np.searchsorted(self.classes_, tree.predict(X)), columns] += 1
        return counts

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The class with the most votes for each row of X."""
        return self.classes_[np.argmax(self.votes(X), axis=0)]

    def score(self, X: np.ndarray, y: np.ndarray) -> float:
        """Accuracy on (X, y)."""
        return float(np.mean(self.predict(X) == y))


def fit_forest(
    X: np.ndarray,
    y: np.ndarray,
    n_trees: int,
    params: TreeParams = TreeParams(),
    executor: Any = None,
    trees_per_task: int = 1,
    seed: int = 0,
) -> tuple[MajorityVoteForest, Any]:
    """Train ``n_trees`` trees, one task per ``trees_per_task`` trees, as one job.

    Returns the forest and the executor's job (``None`` when trained in this process).
    """
    tasks = plan_tasks(n_trees, trees_per_task, seed)
    if executor is None:
        data = InlineShared((X, y))
        batches: Any = [train_trees(data, seeds, params) for seeds in tasks]
        job = None
    else:
        shared = executor.share((X, y))
        batches = executor.map(train_trees, [shared] * len(tasks), tasks, [params] * len(tasks))
        job = batches.job
    trees = [tree for batch in batches for tree in batch]
    return MajorityVoteForest(trees, np.unique(y)), job


def sklearn_forest(
    X: np.ndarray,
    y: np.ndarray,
    n_trees: int,
    params: TreeParams = TreeParams(),
    seed: int = 0,
    n_jobs: int = -1,
) -> Any:
    """scikit-learn's ``RandomForestClassifier`` with the same parameters, trained here."""
    from sklearn.ensemble import RandomForestClassifier

    forest = RandomForestClassifier(n_estimators=n_trees, bootstrap=True, random_state=seed, n_jobs=n_jobs, **asdict(params))
    return forest.fit(X, y)


def split(dataset: Dataset, test_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, ...]:
    """A stratified, deterministic train/test split: X_train, X_test, y_train, y_test."""
    from sklearn.model_selection import train_test_split

    return tuple(train_test_split(dataset.X, dataset.y, test_size=test_fraction, random_state=seed, stratify=dataset.y))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line options."""
    parser = argparse.ArgumentParser(prog="python -m examples.random_forest", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--trees", type=int, default=8, help="number of trees")
    parser.add_argument("--backend", choices=("local", "aws"), default="local", help="where the tasks run")
    parser.add_argument("--memory", type=int, default=2048, help="task memory in MB (Lambda's size)")
    parser.add_argument("--data", help="the Lending Club loan CSV (default: synthetic data)")
    parser.add_argument("--rows", type=int, default=100_000, help="rows of synthetic data")
    parser.add_argument("--features", type=int, default=40, help="features of synthetic data")
    parser.add_argument("--trees-per-task", type=int, default=0, help="trees trained by each task; 0 = automatic")
    parser.add_argument("--max-depth", type=int, default=None, help="depth limit of each tree (default: none)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the data and the trees")
    parser.add_argument("--no-reference", action="store_true", help="skip scikit-learn's forest")
    return parser.parse_args(argv)


def load_data(args: argparse.Namespace) -> Dataset:
    """The Lending Club file when given, else the synthetic set."""
    if args.data:
        return load_lending_club(args.data)
    return synthetic_dataset(args.rows, args.features, args.seed)


def run(args: argparse.Namespace, executor: Any) -> dict[str, Any]:
    """Train with ``executor``, print the report; return the figures it printed."""
    dataset = load_data(args)
    X_train, X_test, y_train, y_test = split(dataset, seed=args.seed)
    params = TreeParams(max_depth=args.max_depth)
    per_task = args.trees_per_task or auto_trees_per_task(len(y_train), args.trees)
    print(
        f"data: {dataset.source}: {len(y_train)} training rows, {len(y_test)} test rows, "
        f"{dataset.X.shape[1]} features, {dataset.y.mean():.1%} class 1"
    )
    started = time.perf_counter()
    forest, job = fit_forest(X_train, y_train, args.trees, params, executor, per_task, args.seed)
    lambdamr_s = time.perf_counter() - started
    figures: dict[str, Any] = {"trees": args.trees, "tasks": math.ceil(args.trees / per_task)}
    figures.update(lambdamr_s=lambdamr_s, accuracy=forest.score(X_test, y_test))
    figures["majority_class_rate"] = float(max(np.mean(y_test == c) for c in np.unique(y_test)))
    print(
        f"lambdamr forest: {args.trees} trees in {figures['tasks']} tasks, {lambdamr_s:.2f} s, "
        f"held-out accuracy {figures['accuracy']:.4f} (always guessing the majority class: "
        f"{figures['majority_class_rate']:.4f})"
    )
    if not args.no_reference:
        started = time.perf_counter()
        reference = sklearn_forest(X_train, y_train, args.trees, params, args.seed)
        figures.update(sklearn_s=time.perf_counter() - started, sklearn_accuracy=reference.score(X_test, y_test))
        print(
            f"scikit-learn RandomForestClassifier(n_jobs=-1), same parameters: {figures['sklearn_s']:.2f} s, "
            f"held-out accuracy {figures['sklearn_accuracy']:.4f}"
        )
    if job is not None:
        print(job.summary())
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    args = parse_args(argv)
    from lambdamr import LambdaExecutor

    with LambdaExecutor(backend=args.backend, memory_mb=args.memory) as executor:
        run(args, executor)
    return 0


if __name__ == "__main__":
    sys.exit(main())
