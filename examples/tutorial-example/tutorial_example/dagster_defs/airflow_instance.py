"""The Airflow instance the tutorial peers with (URL and credentials from the environment)."""

import os

from airlift_dagster import AirflowInstance, BasicAuthBackend

airflow_instance = AirflowInstance(
    # other backends available (e.g. MwaaSessionAuthBackend)
    auth_backend=BasicAuthBackend(
        webserver_url=os.environ.get("TUTORIAL_AIRFLOW_URL", "http://127.0.0.1:8080"),
        username=os.environ.get("TUTORIAL_AIRFLOW_USER", "admin"),
        password=os.environ.get("TUTORIAL_AIRFLOW_PASSWORD", "admin"),
    ),
    name="airflow_instance_one",
)
