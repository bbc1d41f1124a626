"""`python -m include.orderops trace`: a missing or empty warehouse is named, never created."""
from __future__ import annotations

import sqlalchemy as sa

from include import orderops


def test_a_warehouse_file_that_is_not_there_is_named_and_not_created(tmp_path, capsys):
    missing = tmp_path / "nowhere" / "warehouse.db"
    assert orderops.main(["trace", "576000000000000001", "--warehouse", f"sqlite:///{missing}"]) == 1
    assert f"no warehouse at {missing}" in capsys.readouterr().err
    assert not missing.exists() and not missing.parent.exists()


def test_a_warehouse_without_tables_is_named_in_the_error(tmp_path, capsys):
    empty = tmp_path / "empty.db"
    sa.create_engine(f"sqlite:///{empty}").connect().close()   # a file, no tables
    assert orderops.main(["trace", "576000000000000001", "--warehouse", f"sqlite:///{empty}"]) == 1
    err = capsys.readouterr().err
    assert f"cannot read the warehouse sqlite:///{empty}" in err and "no such table" in err
