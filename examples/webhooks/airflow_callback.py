"""Airflow on_failure_callback that reports a failed task to tocsin (webhook "airflow").

    from airflow_callback import tocsin_on_failure
    default_args = {"on_failure_callback": tocsin_on_failure}

Set TOCSIN_AIRFLOW_URL (https://YOUR-TOCSIN/hooks/in/airflow) and AIRFLOW_HOOK_SECRET.
"""

import hashlib
import hmac
import json
import os
import urllib.request


def tocsin_on_failure(context):
    ti = context["task_instance"]
    payload = {
        "dag_id": ti.dag_id,
        "task_id": ti.task_id,
        "run_id": context.get("run_id"),
        "try_number": ti.try_number,
        "max_tries": ti.max_tries,
        "logical_date": str(context.get("logical_date")),
        "exception": str(context.get("exception"))[:2000],
        "log_url": ti.log_url,
    }
    body = json.dumps(payload).encode()
    signature = hmac.new(os.environ["AIRFLOW_HOOK_SECRET"].encode(), body, hashlib.sha256).hexdigest()
    request = urllib.request.Request(
        os.environ["TOCSIN_AIRFLOW_URL"],
        data=body,
        headers={"Content-Type": "application/json", "X-Tocsin-Signature": "sha256=" + signature},
        method="POST",
    )
    try:
        urllib.request.urlopen(request, timeout=10)
    except Exception as e:  # never fail the task over monitoring
        print(f"tocsin: could not report the failure: {e}")
