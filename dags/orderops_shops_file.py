"""No DAG: the shops file's refused entries as this file's import error, each naming its shop and
what was wrong (include/airflow/sla_dag.py); the other shops' DAGs load from their own files."""

from include.airflow.sla_dag import raise_refused_shops

raise_refused_shops()
