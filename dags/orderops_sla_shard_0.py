"""orderops SLA pipeline: the DAGs of the shops whose DAG id hashes to 0 (include/airflow/sla_dag.py)."""

from include.airflow.sla_dag import shard_dags

globals().update(shard_dags(0))
