"""The local shape's secrets backend parses its connections file once per change of it: Airflow's
own parsed the whole file at every lookup, 0.13-0.15 CPU-s of the API server's at 200 shops."""

from __future__ import annotations

import json
import os

import airflow.secrets.local_filesystem as local_filesystem

from include.airflow import connections_file
from include.airflow.connections_file import ConnectionsFile


def test_lookups_parse_the_file_once_until_it_changes(tmp_path, monkeypatch):
    path = tmp_path / "connections.json"
    doc = {f"orderops_shop_{i}_tiktok": {"conn_type": "http", "host": f"shop-{i}.example"} for i in range(50)}
    path.write_text(json.dumps(doc))
    parses = []
    parse = local_filesystem.load_connections_dict
    monkeypatch.setattr(local_filesystem, "load_connections_dict", lambda p: parses.append(p) or parse(p))
    monkeypatch.setattr(connections_file, "_parsed", {})
    backend = ConnectionsFile(connections_file_path=str(path))

    assert [backend.get_connection(f"orderops_shop_{i}_tiktok").host for i in (0, 7, 49)] == [
        "shop-0.example",
        "shop-7.example",
        "shop-49.example",
    ]
    assert backend.get_connection("orderops_nowhere") is None
    assert len(parses) == 1  # Airflow's backend: two a lookup
    # another backend of the process (Airflow may make several) shares the parse
    assert (
        ConnectionsFile(connections_file_path=str(path)).get_connection("orderops_shop_3_tiktok").host
        == "shop-3.example"
    )
    assert len(parses) == 1

    # a connection edited in place is read at the next lookup
    doc["orderops_shop_7_tiktok"]["host"] = "moved.example"
    path.write_text(json.dumps(doc))
    os.utime(path, ns=(1, 1))  # even with a modification time that went back
    assert backend.get_connection("orderops_shop_7_tiktok").host == "moved.example"
    assert len(parses) == 2
    # and a file replaced by another
    replaced = tmp_path / "new.json"
    replaced.write_text(json.dumps({"orderops_shop_7_tiktok": {"conn_type": "http", "host": "new.example"}}))
    os.replace(replaced, path)
    assert backend.get_connection("orderops_shop_7_tiktok").host == "new.example"
    assert backend.get_connection("orderops_shop_0_tiktok") is None


def test_no_file_no_connections():
    assert ConnectionsFile().get_connection("orderops_tiktok") is None
