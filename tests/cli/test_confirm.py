"""Destructive commands list what they delete, ask first, and never touch what lambdamr did
not write: ``teardown``, ``clean`` and ``rotate-key`` from the command line, on moto."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from lambdamr.cli import main
from lambdamr.deploy import layer as layer_module
from lambdamr.deploy import teardown

from .cli_support import AWS, BUCKET, REGION, Terminal, fake_pip

SECRET = "lambdamr/lambdamr-runtime/signing-key"


@pytest.fixture
def aws(monkeypatch):
    monkeypatch.setattr(layer_module, "run_pip", fake_pip)
    monkeypatch.setattr("lambdamr.backends.aws.function.time.sleep", lambda s: None)
    with mock_aws():
        yield {name: boto3.client(name, region_name=REGION) for name in ("s3", "lambda", "iam", "secretsmanager")}


@pytest.fixture
def deployed(aws, capsys):
    """A deployment that may write map_reduce output to s3://BUCKET/out/, with a job's
    leftover temp objects and such an output in its bucket."""
    assert main(["deploy", *AWS, "--write", f"s3://{BUCKET}/out/"]) == 0
    s3 = aws["s3"]
    s3.delete_bucket_policy(Bucket=BUCKET)  # TLS-only: moto in-process is plain HTTP
    s3.put_object(Bucket=BUCKET, Key="lambdamr/s1/fn", Body=b"12345")
    s3.put_object(Bucket=BUCKET, Key="lambdamr/s1/results/000000.1", Body=b"123")
    s3.put_object(Bucket=BUCKET, Key="out/part-00000", Body=b"the user's result")
    capsys.readouterr()
    return aws


def _keys(s3):
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []))


def _exists(aws):
    functions = [f["FunctionName"] for f in aws["lambda"].list_functions()["Functions"]]
    roles = [r["RoleName"] for r in aws["iam"].list_roles()["Roles"]]
    buckets = [b["Name"] for b in aws["s3"].list_buckets()["Buckets"]]
    return functions, roles, buckets


def test_teardown_lists_sizes_per_prefix_and_keeps_user_objects_and_their_bucket(deployed, capsys):
    assert main(["teardown", *AWS, "--yes"]) == 0
    out = capsys.readouterr().out
    plan, done = out.split("removed ", 1)
    assert f"  - 2 objects (8 B) under s3://{BUCKET}/lambdamr/" in plan  # listed first, with counts and sizes
    assert f"  - 1 object (17 B) under s3://{BUCKET}/out/ (not written by lambdamr)" in plan
    assert f"kept bucket {BUCKET} (it holds 1 object lambdamr did not write" in done
    assert "`lambdamr teardown --delete-user-objects` deletes those too" in done  # says how to remove it
    assert _keys(deployed["s3"]) == ["out/part-00000"]  # the temp objects went, the output stayed
    assert deployed["s3"].get_object(Bucket=BUCKET, Key="out/part-00000")["Body"].read() == b"the user's result"
    assert _exists(deployed) == ([], [], [BUCKET])

    assert main(["teardown", *AWS, "--yes", "--delete-user-objects"]) == 0
    out = capsys.readouterr().out
    assert f"removed 1 object (17 B) under s3://{BUCKET}/out/ (not written by lambdamr; --delete-user-objects)" in out
    assert f"removed bucket {BUCKET}" in out
    assert _exists(deployed) == ([], [], [])


@pytest.mark.parametrize(
    "command",
    [["teardown"], ["teardown", "--delete-user-objects"], ["clean"], ["rotate-key"]],
    ids=["teardown", "teardown-user-objects", "clean", "rotate-key"],
)
def test_without_a_terminal_and_without_yes_nothing_is_deleted(deployed, capsys, command):
    before_keys = _keys(deployed["s3"])
    before_secret = deployed["secretsmanager"].describe_secret(SecretId=SECRET)["VersionIdsToStages"]
    assert main([*command, *AWS]) == 1  # pytest's stdin is not a terminal
    captured = capsys.readouterr()
    assert "not on a terminal" in captured.err and f"`lambdamr {' '.join([*command, *AWS])} --yes`" in captured.err
    assert "nothing was changed" in captured.err
    assert _keys(deployed["s3"]) == before_keys
    assert _exists(deployed) == (["lambdamr-runtime"], ["lambdamr-runtime-role"], [BUCKET])
    assert deployed["secretsmanager"].describe_secret(SecretId=SECRET)["VersionIdsToStages"] == before_secret


def test_yes_lets_a_script_clean_and_rotate(deployed, capsys):
    assert main(["clean", *AWS, "--yes"]) == 0
    out = capsys.readouterr().out
    assert f"lambdamr clean will delete 2 objects (8 B) under s3://{BUCKET}/lambdamr/" in out
    assert f"  - 2 objects (8 B) under s3://{BUCKET}/lambdamr/s1/" in out  # per session
    assert "deleted 2 temp objects" in out
    assert _keys(deployed["s3"]) == ["out/part-00000"]  # outside the temp prefix: never cleaned

    versions = deployed["secretsmanager"].describe_secret(SecretId=SECRET)["VersionIdsToStages"]
    assert main(["rotate-key", *AWS, "--yes"]) == 0
    assert "will replace the signing key" in capsys.readouterr().out
    rotated = deployed["secretsmanager"].describe_secret(SecretId=SECRET)["VersionIdsToStages"]
    assert len(rotated) == len(versions) + 1


@pytest.mark.parametrize(("answer", "status", "left"), [("n", 1, 3), ("", 1, 3), ("y", 0, 1), ("YES", 0, 1)])
def test_on_a_terminal_the_answer_decides(deployed, capsys, monkeypatch, answer, status, left):
    monkeypatch.setattr("sys.stdin", Terminal(answer))
    assert main(["clean", *AWS]) == status
    out = capsys.readouterr().out
    assert "Delete these 2 objects? [y/N]" in out
    assert len(_keys(deployed["s3"])) == left
    if status:
        assert "nothing deleted" in out


def test_a_live_session_is_listed_nowhere_and_kept(deployed, capsys):
    deployed["s3"].put_object(Bucket=BUCKET, Key="lambdamr/live/fn", Body=b"x")
    deployed["s3"].put_object(Bucket=BUCKET, Key="lambdamr/live/~lease.json", Body=b"{}")  # fresh lease
    assert main(["clean", *AWS, "--yes"]) == 0
    out = capsys.readouterr().out
    assert "live" not in out and "deleted 2 temp objects" in out
    assert _keys(deployed["s3"]) == ["lambdamr/live/fn", "lambdamr/live/~lease.json", "out/part-00000"]


def test_a_bucket_deploy_did_not_create_keeps_its_objects_even_with_the_flag(aws, capsys):
    aws["s3"].create_bucket(Bucket="my-data")
    aws["s3"].put_object(Bucket="my-data", Key="precious.csv", Body=b"1,2")
    aws["s3"].put_object(Bucket="my-data", Key="lambdamr/s1/fn", Body=b"x")
    result = teardown(region=REGION, bucket="my-data", delete_user_objects=True)
    assert result["removed"] == ["1 object (1 B) under s3://my-data/lambdamr/"]
    assert result["kept"] == ["bucket my-data (not created by lambdamr deploy)"]
    assert [o["Key"] for o in aws["s3"].list_objects_v2(Bucket="my-data")["Contents"]] == ["precious.csv"]


def test_a_dry_run_only_lists(deployed):
    before = (_keys(deployed["s3"]), _exists(deployed))
    preview = teardown(region=REGION, dry_run=True, delete_user_objects=True)
    assert f"bucket {BUCKET}" in preview["removed"] and "function lambdamr-runtime" in preview["removed"]
    assert (_keys(deployed["s3"]), _exists(deployed)) == before


def test_clean_of_a_local_folder_lists_and_asks(tmp_path, capsys):
    folder = tmp_path / "store"
    (folder / "lambdamr" / "s1").mkdir(parents=True)
    (folder / "lambdamr" / "s1" / "fn").write_bytes(b"1234")
    (folder / "mine.txt").write_text("not lambdamr's")
    assert main(["clean", "--storage", str(folder)]) == 1
    assert "lambdamr clean --storage" in capsys.readouterr().err
    assert (folder / "lambdamr" / "s1" / "fn").exists()
    assert main(["clean", "--storage", str(folder), "--yes"]) == 0
    out = capsys.readouterr().out
    assert "1 object (4 B) under" in out and "deleted 1 temp objects" in out
    assert not (folder / "lambdamr" / "s1" / "fn").exists() and (folder / "mine.txt").exists()
