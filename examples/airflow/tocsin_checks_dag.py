"""Run tocsin's Elasticsearch checks as Airflow tasks.

Each task runs one check with the DAG run's logical date, so backfills evaluate date
templates (``logs-{now:%Y.%m.%d}``) and store size samples for the day being processed.

Exit codes: 0 healthy, 1 alerting, 2 could not check. tocsin itself sends the alerts to chat;
the task fails on 1 and 2 so the run shows red in Airflow too, and Airflow's ``retries`` apply
to 2 (a cluster that could not be read). Set ``skip_on_exit_code=1`` on a task if alerts should
not fail the DAG.
"""

from datetime import timedelta

import pendulum
from airflow import DAG
from airflow.operators.bash import BashOperator

TOCSIN = "tocsin"  # on PATH, or an absolute path
CONFIG = "/etc/tocsin/tocsin.toml"

with DAG(
    dag_id="tocsin_elasticsearch_checks",
    schedule="0 16 * * *",
    start_date=pendulum.datetime(2026, 11, 1, tz="America/New_York"),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    tags=["monitoring", "elasticsearch"],
) as dag:
    missing_indices = BashOperator(
        task_id="missing_indices",
        bash_command=f"{TOCSIN} check run missing-indices --config {CONFIG} --at {{{{ logical_date.isoformat() }}}}",
    )

    index_size = BashOperator(
        task_id="index_size",
        bash_command=f"{TOCSIN} check run index-size --config {CONFIG} --at {{{{ logical_date.isoformat() }}}}",
    )

    missing_indices >> index_size
