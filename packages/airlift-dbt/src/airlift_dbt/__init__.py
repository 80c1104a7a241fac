"""airlift-dbt: the dbt models an Airflow task builds, as Dagster assets (observe and migrate).

>>> from dagster_dbt import DbtProject                                           # doctest: +SKIP
>>> from airlift_dagster import dag_defs, task_defs                              # doctest: +SKIP
>>> from airlift_dbt import dbt_defs                                             # doctest: +SKIP
>>> dag_defs("rebuild_customers_list", task_defs("run_dbt_model", dbt_defs(      # doctest: +SKIP
...     manifest=project_dir / "target" / "manifest.json", project=DbtProject(project_dir))))
"""

from __future__ import annotations

from airlift_dbt.defs import AirliftDbtError, dbt_defs
from airlift_dbt.version import __version__

__all__ = ["AirliftDbtError", "__version__", "dbt_defs"]
