"""`python -m include.cli`: a missing, empty or unopenable warehouse and an unwritable pools file are named,
never created."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from include import cli as orderops


def test_a_warehouse_file_that_is_not_there_is_named_and_not_created(tmp_path, capsys):
    missing = tmp_path / "nowhere" / "warehouse.db"
    assert orderops.main(["trace", "576000000000000001", "--warehouse", f"sqlite:///{missing}"]) == 1
    assert f"no warehouse at {missing}" in capsys.readouterr().err
    assert not missing.exists() and not missing.parent.exists()


def test_a_warehouse_without_tables_is_named_in_the_error(tmp_path, capsys):
    empty = tmp_path / "empty.db"
    sa.create_engine(f"sqlite:///{empty}").connect().close()  # a file, no tables
    assert orderops.main(["trace", "576000000000000001", "--warehouse", f"sqlite:///{empty}"]) == 1
    err = capsys.readouterr().err
    assert f"cannot read the warehouse sqlite:///{empty}" in err and "no such table" in err


@pytest.mark.parametrize("url", ["notaurl", "mysql://root@127.0.0.1/test"])
def test_a_warehouse_url_orderops_cannot_open_is_refused_by_name(url, capsys):
    with pytest.raises(SystemExit) as refused:
        orderops.main(["trace", "576000000000000001", "--warehouse", url])
    assert refused.value.code == 2
    assert f"--warehouse: {url!r} is not a database URL" in capsys.readouterr().err


def test_pools_to_a_folder_that_is_not_there_is_refused_by_name(tmp_path, capsys):
    target = tmp_path / "missing" / "pools.json"
    with pytest.raises(SystemExit) as refused:
        orderops.main(["pools", "--out", str(target)])
    assert refused.value.code == 2
    assert f"--out {target}: No such file or directory" in capsys.readouterr().err
