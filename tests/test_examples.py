"""The seed's examples end to end at a small size: Mandelbrot tiles and a random forest."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from examples import mandelbrot, random_forest
from examples.mandelbrot import FULL_SET, escape_counts, render, render_job, split_image
from examples.random_forest import (
    MajorityVoteForest,
    TreeParams,
    fit_forest,
    load_lending_club,
    loan_target,
    parse_emp_length,
    parse_month_year,
    plan_tasks,
    sklearn_forest,
    split,
    synthetic_dataset,
)

# --- Mandelbrot ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def executor(shared_local_executor):
    """One executor per storage for this module's tests (tests/conftest.py)."""
    return shared_local_executor


def test_known_points_escape_when_they_should():
    re = np.array([0.0, -1.0, 1.0, 2.0])
    counts = escape_counts(re, np.array([0.0]), max_iter=50)
    # 0 and -1 stay bounded; c=1: 0, 1, 2, 5 escapes at step 3; c=2: 0, 2, 6 at step 2.
    assert counts.tolist() == [[50, 50, 3, 2]]


@pytest.mark.parametrize("tiles", [1, 2, 3, 5, 6, 12])
def test_tiles_cover_every_pixel_exactly_once(tiles):
    coverage = np.zeros((30, 40), dtype=int)
    for tile in split_image(40, 30, tiles):
        coverage[tile.row0 : tile.row1, tile.col0 : tile.col1] += 1
    assert len(split_image(40, 30, tiles)) == tiles
    assert (coverage == 1).all()


@pytest.mark.parametrize("tiles", [2, 7, 16])
def test_tiled_render_in_process_is_pixel_identical(tiles):
    window = (-0.75, -0.7, 0.1, 0.14)  # a zoom on the seahorse valley
    assert np.array_equal(render(64, 48, 200, window, tiles), render(64, 48, 200, window, 1))


def test_tiled_render_through_lambdamr_is_pixel_identical(executor):
    single = render(64, 64, 100, FULL_SET, tiles=1)
    tiled, job = render_job(64, 64, 100, FULL_SET, tiles=6, executor=executor)
    assert np.array_equal(tiled, single)
    assert tiled.dtype == np.int32
    summary = job.summary()
    assert (summary.tasks, summary.failed) == (6, 0)
    assert summary.cost.total_usd > 0


def test_mandelbrot_command_writes_the_png(executor, tmp_path, capsys):
    from matplotlib import image as mpimg

    out = tmp_path / "m.png"
    args = mandelbrot.parse_args(
        ["--width", "64", "--height", "64", "--iterations", "60", "--tiles", "4", "--out", str(out)]
    )
    counts = mandelbrot.run(args, executor)
    picture = mpimg.imread(out)
    assert picture.shape[:2] == (64, 64)
    inside = counts >= 60
    assert inside.any() and (picture[inside][:, :3] == 0).all()  # the set itself is black
    assert (picture[~inside][:, :3].sum(axis=-1) > 0).all()
    printed = capsys.readouterr().out
    assert "64x64" in printed and "estimated cost" in printed


def test_mandelbrot_main_runs_on_the_local_backend(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LAMBDAMR_STORAGE", str(tmp_path / "storage"))
    monkeypatch.setenv("LAMBDAMR_WORKERS", "1")
    monkeypatch.setenv("LAMBDAMR_PROGRESS", "0")
    out = tmp_path / "main.png"
    argv = ["--width", "32", "--height", "24", "--iterations", "20", "--tiles", "2", "--out", str(out)]
    assert mandelbrot.main(argv) == 0
    assert out.exists()
    assert "lambdamr job" in capsys.readouterr().out


# --- random forest ------------------------------------------------------------------------


class FixedTree:
    """A stand-in tree that always predicts the same labels."""

    def __init__(self, labels):
        self.labels = np.asarray(labels)

    def predict(self, X):
        return self.labels


def test_majority_vote_counts_votes_and_breaks_ties_low():
    trees = [FixedTree([0, 1, 2, 1]), FixedTree([0, 2, 2, 0]), FixedTree([1, 1, 0, 2])]
    forest = MajorityVoteForest(trees, np.array([0, 1, 2]))
    assert forest.votes(np.zeros((4, 1))).tolist() == [[2, 0, 1, 1], [1, 2, 0, 1], [0, 1, 2, 1]]
    assert forest.predict(np.zeros((4, 1))).tolist() == [0, 1, 2, 0]


def test_task_plan_packs_trees_and_keeps_seeds_distinct():
    plan = plan_tasks(7, 3, seed=5)
    assert [len(seeds) for seeds in plan] == [3, 3, 1]
    flat = [s for seeds in plan for s in seeds]
    assert len(set(flat)) == 7 and flat == [s for seeds in plan_tasks(7, 1, seed=5) for s in seeds]


def test_synthetic_data_is_deterministic_and_loan_shaped():
    a, b = synthetic_dataset(1000, 12, seed=3), synthetic_dataset(1000, 12, seed=3)
    assert a.X.shape == (1000, 12) and a.X.dtype == np.float32 and a.y.dtype == np.int8
    assert np.array_equal(a.X, b.X) and np.array_equal(a.y, b.y)
    assert 0.15 < a.y.mean() < 0.3  # about one loan in five goes bad


def test_forest_through_lambdamr_matches_the_forest_trained_here(executor, monkeypatch):
    X_train, X_test, y_train, y_test = split(synthetic_dataset(2000, 10, seed=0))
    shares = []
    original_share = executor.share
    monkeypatch.setattr(executor, "share", lambda obj: shares.append(obj) or original_share(obj))

    forest, job = fit_forest(X_train, y_train, 7, TreeParams(), executor, trees_per_task=3)
    local, _ = fit_forest(X_train, y_train, 7, TreeParams())

    assert len(shares) == 1  # the training data is stored once per job, not once per task
    assert job.summary().tasks == 3 and len(forest.trees) == 7
    assert np.array_equal(forest.predict(X_test), local.predict(X_test))
    accuracy = forest.score(X_test, y_test)
    majority = max(np.mean(y_test == 0), np.mean(y_test == 1))
    reference = sklearn_forest(X_train, y_train, 7, TreeParams(), n_jobs=1).score(X_test, y_test)
    assert accuracy > majority + 0.05
    assert abs(accuracy - reference) < 0.05


def test_random_forest_command_reports_both_accuracies(executor, capsys):
    args = random_forest.parse_args(["--trees", "3", "--rows", "1500", "--features", "8"])
    figures = random_forest.run(args, executor)
    printed = capsys.readouterr().out
    assert figures["tasks"] == 1  # 1,200 training rows: cheap trees travel together
    assert figures["accuracy"] > figures["majority_class_rate"]
    assert "scikit-learn" in printed and "estimated cost on AWS Lambda" in printed


# --- the Lending Club loader ----------------------------------------------------------------

LOAN_COLUMNS = [
    "id", "member_id", "loan_amnt", "term", "int_rate", "grade", "emp_title", "emp_length",
    "home_ownership", "annual_inc", "issue_d", "loan_status", "url", "desc", "title",
    "revol_util", "total_pymnt", "hardship_type", "earliest_cr_line",
]
STATUSES = [
    "Fully Paid", "Charged Off", "Current", "Default", "Late (31-120 days)", "Issued",
    "Does not meet the credit policy. Status:Charged Off", "In Grace Period",
]


def write_lending_club_csv(path: Path, rows: int = 40) -> None:
    """A small file with the real columns' formats, LendingClub's note line and footer."""
    rng = np.random.default_rng(0)
    with open(path, "w", newline="") as handle:
        handle.write("Notes offered by Prospectus (https://www.lendingclub.com/info/prospectus.action)\n")
        writer = csv.writer(handle)
        writer.writerow(LOAN_COLUMNS)
        for i in range(rows):
            writer.writerow([
                1000 + i, 5000 + i, 1000 * (i % 9 + 1), [" 36 months", " 60 months"][i % 2],
                f"{6 + (i % 17) * 1.13:.2f}%", "ABCDEFG"[i % 7], f"employer {i}",
                ["10+ years", "< 1 year", "3 years", "n/a"][i % 4], ["RENT", "OWN", "MORTGAGE"][i % 3],
                "" if i % 10 == 3 else 40000 + 250 * i, ["Dec-2011", "Jan-2012"][i % 2],
                STATUSES[i % len(STATUSES)], f"https://lendingclub.com/browse/loanDetail.action?loan_id={i}",
                "Borrower added on 12/22/11 > I need to pay off my credit cards", "Debt consolidation",
                f"{rng.uniform(0, 99):.1f}%", 1234.56, "", "Aug-1994",
            ])
        handle.write("\nTotal amount funded in policy code 1: 123456789\n")


def test_lending_club_loader_cleans_the_file(tmp_path):
    path = tmp_path / "loans.csv"
    write_lending_club_csv(path)
    data = load_lending_club(str(path))

    assert len(data.y) == 35  # 40 loans less the 5 "Issued" ones; the footer line is gone
    assert data.X.dtype == np.float32 and not np.isnan(data.X).any()
    assert data.y.tolist()[:8] == [0, 1, 0, 1, 1, 1, 1, 0]  # statuses 0-4, 6, 7, then 8 = Fully Paid
    names = data.feature_names
    for gone in ("id", "member_id", "url", "desc", "title", "emp_title", "total_pymnt", "hardship_type"):
        assert gone not in names
    column = {name: data.X[:, names.index(name)] for name in names}
    assert set(column["term"]) == {36.0, 60.0}
    assert column["int_rate"][0] == pytest.approx(6.0)
    assert column["emp_length"][:3].tolist() == [10.0, 0.0, 3.0]
    assert column["emp_length"][3] == 3.0  # "n/a" -> the median of 5 x 0, 10 x 3 and 10 x 10 years
    assert column["issue_d"][0] == pytest.approx(2011 + 11 / 12)
    assert {"grade=A", "grade=G", "home_ownership=RENT"} <= set(names)
    assert column["grade=A"][0] == 1.0 and column["grade=B"][0] == 0.0


def test_random_forest_runs_on_the_lending_club_file(executor, tmp_path, capsys):
    path = tmp_path / "loans.csv"
    write_lending_club_csv(path, rows=200)
    figures = random_forest.run(random_forest.parse_args(["--data", str(path), "--trees", "3"]), executor)
    assert 0.0 <= figures["accuracy"] <= 1.0
    assert "Lending Club" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("status", "target"),
    [("Fully Paid", 0), ("Current", 0), ("Charged Off", 1), ("Default", 1), ("Late (16-30 days)", 1),
     ("Does not meet the credit policy. Status:Fully Paid", 0)],
)
def test_loan_status_becomes_good_or_bad(status, target):
    assert loan_target(status) == target


def test_unknown_statuses_and_odd_values_become_nan():
    assert np.isnan(loan_target("Issued")) and np.isnan(loan_target(None))
    assert parse_emp_length("10+ years") == 10 and parse_emp_length("< 1 year") == 0
    assert np.isnan(parse_emp_length("n/a"))
    assert parse_month_year("Mar-2015") == pytest.approx(2015 + 2 / 12)
    assert np.isnan(parse_month_year("2015-03-01"))
