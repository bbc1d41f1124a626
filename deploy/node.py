"""The host name Airflow records for a process (`[core] hostname_callable`).

Two Celery workers on one machine would both report the machine's FQDN; the local production
shape gives each its own name through `ORDEROPS_NODE_NAME` so task instances show which worker ran
them. Elsewhere (one worker per machine or pod) the variable is unset and the FQDN is used.
"""

from __future__ import annotations

import os
import socket

NODE_NAME_ENV = "ORDEROPS_NODE_NAME"


def node_name() -> str:
    return os.environ.get(NODE_NAME_ENV) or socket.getfqdn()
