"""The local shape's secrets backend: Airflow's connections file, parsed once per change of the file.

Airflow's `LocalFilesystemBackend` parses the whole file on every lookup (twice: it asks whether the
id is there, then for it). With a shop's four platform connections each, 200 shops' file held 802
connections, and each lookup cost the API server 0.13-0.15 CPU-s (0.0035 at 26): every task reads
its connections through the API server's execution API, and the webhook receiver read a shop's
four on every delivery, so at 200 shops the API server fell behind and runs stopped completing
(bench/results/fleet-200.json). Here a lookup costs a `stat` of the file unless the file changed
(another inode, size or modification time), so a connection edited in place, or the file replaced,
is read at the next lookup. Set by deploy/prod_local.py as `[secrets] backend`.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from airflow.secrets.local_filesystem import LocalFilesystemBackend

_parsed: dict[str, tuple[tuple[int, int, int], dict[str, Any]]] = {}  # path -> (file's identity, its connections)
_lock = threading.Lock()


class ConnectionsFile(LocalFilesystemBackend):
    @property
    def _local_connections(self) -> dict[str, Any]:
        path = self.connections_file
        if not path:
            return {}
        found = os.stat(path)
        identity = (found.st_ino, found.st_size, found.st_mtime_ns)
        with _lock:
            known = _parsed.get(path)
        if known is not None and known[0] == identity:
            return known[1]
        connections = super()._local_connections
        with _lock:
            _parsed[path] = (identity, connections)
        return connections
