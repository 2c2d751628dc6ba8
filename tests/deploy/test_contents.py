"""How teardown and clean describe a bucket: lambdamr's prefixes apart from the user's."""

from __future__ import annotations

import pytest

from lambdamr.deploy.contents import PrefixUsage, group_by_session, group_objects, human_size


def test_lambdamrs_prefixes_come_first_and_the_rest_is_grouped_by_first_folder():
    objects = [
        ("out/part-00000", 10),
        ("lambdamr/s1/fn", 5),
        ("lambdamr-deploy/layer.zip", 100),
        ("out/part-00001", 20),
        ("notes.txt", 1),
        ("lambdamrx/not-ours", 7),  # a prefix that only starts like ours
        ("lambdamr/s2/results/000000.1", 3),
    ]
    contents = group_objects("b", objects, "lambdamr")
    assert contents.usages == (
        PrefixUsage("lambdamr-deploy/", 1, 100, True),
        PrefixUsage("lambdamr/", 2, 8, True),
        PrefixUsage("", 1, 1, False),
        PrefixUsage("lambdamrx/", 1, 7, False),
        PrefixUsage("out/", 2, 30, False),
    )
    assert contents.size == 146 and [u.prefix for u in contents.users] == ["", "lambdamrx/", "out/"]
    assert contents.users[0].describe("s3://b") == "1 object (1 B) under s3://b/ (top level)"
    assert contents.users[2].describe("s3://b") == "2 objects (30 B) under s3://b/out/"


def test_clean_groups_by_session():
    objects = [("runs/lambdamr/s1/fn", 4), ("runs/lambdamr/s1/results/1", 6), ("runs/lambdamr/s2/fn", 1), ("runs/lambdamr/x", 2)]
    usages = group_by_session("/tmp/store", objects, "runs/lambdamr").usages
    assert [(u.prefix, u.count, u.size) for u in usages] == [
        ("runs/lambdamr/", 1, 2),  # a key outside any session folder
        ("runs/lambdamr/s1/", 2, 10),
        ("runs/lambdamr/s2/", 1, 1),
    ]


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KB"), (1536, "1.5 KB"), (3 * 2**30, "3.0 GB"), (2**50, "1024.0 TB")],
)
def test_human_size(size, text):
    assert human_size(size) == text
