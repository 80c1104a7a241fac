"""How Airflow objects become Dagster asset specs: the documented default rules and the
:class:`AirflowTranslator` that overrides them.

The defaults (what Airlift did before the translator existed, kept unchanged):

- a DAG is the asset ``[instance_name, "dag", dag_id]`` in group ``instance_name``, kind
  ``airflow``, tag ``airlift/airflow_instance``; no owners, no tags from the DAG;
- an Airflow 2 dataset / Airflow 3 asset is the asset :func:`dataset_asset_key` of its URI.

Subclass the translator and override a method to change one rule; ``owners_from_dag`` and
``tags_from_dag`` switch on the two common ones.

>>> from airlift_protocol import ApiVersion, DagInfo
>>> dag = DagInfo.from_rest({"dag_id": "daily", "owners": ["data-eng"], "tags": [{"name": "sales"}]}, api=ApiVersion.V2)
>>> spec = AirflowTranslator(owners_from_dag=True, tags_from_dag=True).get_dag_asset_spec(AirflowDagProps("prod", dag))
>>> spec.key.path, spec.owners, spec.tags["sales"]
(['prod', 'dag', 'daily'], ['team:data-eng'], '')
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dagster import AssetKey, AssetSpec

from airlift_protocol import AirflowDataset, DagInfo

__all__ = [
    "AIRFLOW_INSTANCE_TAG",
    "AirflowDagProps",
    "AirflowDatasetProps",
    "AirflowTranslator",
    "DatasetFilter",
    "dag_asset_key",
    "dataset_asset_key",
]

#: Tag on every asset Airlift creates for an Airflow object: the Airflow instance's name.
AIRFLOW_INSTANCE_TAG = "airlift/airflow_instance"
_PART = re.compile(r"[^A-Za-z0-9_]+")
_TAG = re.compile(r"[^A-Za-z0-9_.-]+")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def dag_asset_key(instance_name: str, dag_id: str) -> AssetKey:
    """Key of the asset standing for a DAG: ``[instance_name, "dag", dag_id]``.

    >>> dag_asset_key("prod", "daily").to_user_string()
    'prod/dag/daily'
    """
    return AssetKey([instance_name, "dag", dag_id])


def dataset_asset_key(instance_name: str, uri: str) -> AssetKey:
    """Key of the asset standing for an Airflow dataset / asset, from its URI:
    ``[instance_name, "dataset", scheme, *segments]``. The scheme is what comes before ``://``
    (none for a URI without one); the rest is split on ``/``; in every part each run of characters
    other than letters, digits and ``_`` becomes one ``_`` (empty parts are dropped). Airflow 3
    assets use their URI too (not their name), so a DAG keeps its dataset keys across an upgrade.

    >>> dataset_asset_key("prod", "s3://warehouse/orders/daily.parquet").path
    ['prod', 'dataset', 's3', 'warehouse', 'orders', 'daily_parquet']
    >>> dataset_asset_key("prod", "postgres://db:5432/public.orders").path
    ['prod', 'dataset', 'postgres', 'db_5432', 'public_orders']
    >>> dataset_asset_key("prod", "orders").path
    ['prod', 'dataset', 'orders']
    """
    scheme, sep, rest = uri.partition("://")
    raw = [scheme, *rest.split("/")] if sep else uri.split("/")
    parts = [p for p in (_PART.sub("_", r).strip("_") for r in raw) if p]
    return AssetKey([instance_name, "dataset", *(parts or ["_"])])


@dataclass(frozen=True)
class AirflowDagProps:
    """What the translator knows about a DAG: the instance name, the DAG, and the metadata Airlift
    puts on its asset (UI link, raw REST dict, source code)."""

    instance_name: str
    dag: DagInfo
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AirflowDatasetProps:
    """What the translator knows about an Airflow dataset / asset (producers and consumers included)."""

    instance_name: str
    dataset: AirflowDataset
    metadata: Mapping[str, Any] = field(default_factory=dict)


class AirflowTranslator:
    """Turns DAGs and datasets into asset specs; override a method to change one rule.

    ``owners_from_dag``: the DAG's Airflow owners become Dagster owners (an e-mail address stays
    as it is, any other name ``team:<name>``; Airflow's default owner ``airflow`` is left out).
    ``tags_from_dag``: each DAG tag becomes a Dagster tag with an empty value (characters Dagster
    does not allow in tag keys become ``_``).

    Keys: a changed DAG key is used everywhere in Dagster (the sensor, the checks, lineage), but the
    ``DagsterOperator`` finds a whole-DAG migration by the default key: give it the key explicitly
    when you change it. Airlift keeps its own metadata and the ``airlift/airflow_instance`` tag on
    whatever spec the translator returns.

    >>> class MyTranslator(AirflowTranslator):
    ...     def get_dag_group_name(self, props: AirflowDagProps) -> str | None:
    ...         return "airflow_" + props.dag.dag_id.split(".")[0]
    """

    def __init__(self, *, owners_from_dag: bool = False, tags_from_dag: bool = False) -> None:
        self.owners_from_dag = owners_from_dag
        self.tags_from_dag = tags_from_dag

    # ---- DAGs
    def get_dag_asset_key(self, props: AirflowDagProps) -> AssetKey:
        return dag_asset_key(props.instance_name, props.dag.dag_id)

    def get_dag_group_name(self, props: AirflowDagProps) -> str | None:
        return props.instance_name

    def get_dag_description(self, props: AirflowDagProps) -> str:
        return props.dag.description or f"Airflow DAG {props.dag.dag_id!r} of {props.instance_name}"

    def get_dag_owners(self, props: AirflowDagProps) -> Sequence[str]:
        if not self.owners_from_dag:
            return []
        return sorted({o if _EMAIL.match(o) else f"team:{_TAG.sub('_', o)[:58]}" for o in props.dag.owners if o and o != "airflow"})

    def get_dag_tags(self, props: AirflowDagProps) -> Mapping[str, str]:
        tags = {_TAG.sub("_", t)[:63]: "" for t in props.dag.tags if t} if self.tags_from_dag else {}
        return {**tags, AIRFLOW_INSTANCE_TAG: props.instance_name}

    def get_dag_kinds(self, props: AirflowDagProps) -> set[str]:
        return {"airflow"}

    def get_dag_asset_spec(self, props: AirflowDagProps) -> AssetSpec:
        """The DAG's spec, from the methods above (Airlift adds the dependencies)."""
        return AssetSpec(
            key=self.get_dag_asset_key(props),
            description=self.get_dag_description(props),
            metadata=dict(props.metadata),
            group_name=self.get_dag_group_name(props),
            owners=list(self.get_dag_owners(props)),
            tags=dict(self.get_dag_tags(props)),
            kinds=self.get_dag_kinds(props),
        )

    # ---- datasets (Airflow 2) / assets (Airflow 3)
    def get_dataset_asset_key(self, props: AirflowDatasetProps) -> AssetKey:
        return dataset_asset_key(props.instance_name, props.dataset.uri)

    def get_dataset_asset_spec(self, props: AirflowDatasetProps) -> AssetSpec:
        """The dataset's spec (Airlift adds the producing tasks' assets as dependencies)."""
        word = "dataset" if props.dataset.api.value == "v1" else "asset"
        return AssetSpec(
            key=self.get_dataset_asset_key(props),
            description=f"Airflow {word} {props.dataset.uri} of {props.instance_name}",
            metadata=dict(props.metadata),
            group_name=props.instance_name,
            tags={AIRFLOW_INSTANCE_TAG: props.instance_name},
            kinds={"airflow"},
        )


@dataclass(frozen=True)
class DatasetFilter:
    """Which Airflow datasets / assets become Dagster assets: those a selected DAG produces or
    consumes, where a DAG is selected when its id matches ``dag_id_pattern`` and it carries one of
    ``dag_tags`` (each test skipped when unset), and whose URI matches ``uri_pattern``. Patterns are
    Python regular expressions searched anywhere in the text (a plain substring works).

    >>> from airlift_protocol import ApiVersion
    >>> d = AirflowDataset.from_rest({"uri": "s3://lake/orders", "producing_tasks": [{"dag_id": "load", "task_id": "t"}]}, api=ApiVersion.V1)
    >>> DatasetFilter(uri_pattern="^s3://").selects(d, {"load": ()}), DatasetFilter(dag_tags=["sales"]).selects(d, {"load": ()})
    (True, False)
    """

    dag_id_pattern: str | None = None
    dag_tags: tuple[str, ...] = ()
    uri_pattern: str | None = None

    def __post_init__(self) -> None:
        for name in ("dag_id_pattern", "uri_pattern"):
            value = getattr(self, name)
            if value is not None:
                try:
                    re.compile(value)
                except re.error as e:
                    raise ValueError(f"DatasetFilter({name}={value!r}): not a regular expression: {e}") from e
        object.__setattr__(self, "dag_tags", tuple(self.dag_tags))

    def dag_selected(self, dag_id: str, tags: Sequence[str]) -> bool:
        """Whether the DAG's datasets are mapped."""
        if self.dag_id_pattern is not None and not re.search(self.dag_id_pattern, dag_id):
            return False
        return not self.dag_tags or bool(set(self.dag_tags) & set(tags))

    def selects(self, dataset: AirflowDataset, dags: Mapping[str, Sequence[str]]) -> bool:
        """Whether ``dataset`` is mapped; ``dags``: the selected DAG ids → their tags."""
        if self.uri_pattern is not None and not re.search(self.uri_pattern, dataset.uri):
            return False
        return any(d in dags and self.dag_selected(d, dags[d]) for d in dataset.dag_ids)
