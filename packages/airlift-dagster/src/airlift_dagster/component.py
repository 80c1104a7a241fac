"""``AirflowInstanceComponent``: peer and observe an Airflow instance from a ``defs.yaml``.

Scaffold it with ``dg scaffold defs airlift_dagster.AirflowInstanceComponent airflow`` and fill in::

    type: airlift_dagster.AirflowInstanceComponent
    attributes:
      name: airflow_instance_one
      webserver_url: "{{ env.AIRFLOW_URL }}"
      auth:
        kind: basic            # basic | token | mwaa | composer | astronomer
        username: admin
        password: "{{ env.AIRFLOW_PASSWORD }}"
      dags:
        ids: [rebuild_customers_list]
      mappings:
        - dag_id: rebuild_customers_list
          task_id: load_raw_customers
          assets:
            - key: raw_data/raw_customers
        - dag_id: rebuild_customers_list   # no task_id: built by the DAG as a whole
          assets:
            - key: reports/customers_weekly
        - dag_id: rebuild_customers_list   # executable assets the project defines elsewhere
          task_id: export_customers
          by_key: [customers_csv]
      dag_assets:              # optional: DAG owners and tags on the DAG assets
        owners_from_dag: true
        tags_from_dag: true
      datasets:                # optional: Airflow 2 datasets / Airflow 3 assets as Dagster assets
        uri_pattern: "^s3://"
      sensor:
        minimum_interval_seconds: 30
        mirror_runs: false

A translator (asset keys and specs of DAGs and datasets) and an event transformer are Python: subclass
the component and override :meth:`AirflowInstanceComponent.get_translator` /
:meth:`AirflowInstanceComponent.get_event_transformer`, then name the subclass in ``type:``.

The Airflow state (DAGs, tasks, sources) is kept with Dagster's state-backed definitions: it is read
from Airflow only when the state is refreshed (``dg utils refresh-defs-state``), never when a code
server loads or reloads the definitions, ``dagster dev`` included (set ``defs_state.refresh_if_dev: true``
to refresh on every ``dagster dev`` load instead). Where it is kept follows ``defs_state`` (default
``LOCAL_FILESYSTEM``: the project's ``.local_defs_state`` folder, written by the refresh command, e.g.
while building the image; ``VERSIONED_STATE_STORAGE``: the instance's ``defs_state_storage``).
"""

# no `from __future__ import annotations`: Dagster resolves these dataclass annotations at runtime

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Literal

from dagster import AssetKey, AssetSpec, DefaultSensorStatus, Definitions
from pydantic import Field

from airlift_client import (
    AirflowInstance,
    AstronomerAuthBackend,
    AuthBackend,
    BasicAuthBackend,
    ComposerAuthBackend,
    TokenAuthBackend,
)
from airlift_dagster.defs import build_defs_from_airflow_instance
from airlift_dagster.errors import AirliftDagsterError
from airlift_dagster.mapping import dag_defs, task_defs
from airlift_dagster.sensor import SensorSettings
from airlift_dagster.state import AirflowInstanceState, DagFilter, fetch_airflow_state
from airlift_dagster.transform import EventTransformer
from airlift_dagster.translator import AirflowTranslator, DatasetFilter
from airlift_protocol import DagInfo

try:  # Dagster's state-backed components (dagster.components, 1.12 and 1.13)
    from dagster.components import (
        ComponentLoadContext,
        DefsStateConfig,
        DefsStateConfigArgs,
        Model,
        Resolvable,
        ResolvedAssetSpec,
        ResolvedDefsStateConfig,
        Scaffolder,
        ScaffoldRequest,
        StateBackedComponent,
        scaffold_component,
        scaffold_with,
    )
    from dagster_shared.serdes.objects.models.defs_state_info import DefsStateManagementType
except ImportError as _missing:  # pragma: no cover - only with a Dagster outside the supported range
    import dagster as _dagster

    raise AirliftDagsterError(
        f"AirflowInstanceComponent needs Dagster's state-backed components (dagster.components.StateBackedComponent, "
        f"Dagster 1.12 or newer); the installed Dagster is {_dagster.__version__}: install dagster>=1.12,<1.14"
    ) from _missing

__all__ = ["AirflowAuth", "AirflowInstanceComponent", "DagAssetsConfig", "DagSelection", "DatasetsConfig", "SensorConfig", "TaskMapping"]

log = logging.getLogger("airlift_dagster")
AuthKind = Literal["basic", "token", "mwaa", "composer", "astronomer"]


class AirflowAuth(Resolvable, Model):
    """How to authenticate (``kind``) and the credentials that kind needs; give secrets through
    Dagster's env templating (``"{{ env.AIRFLOW_PASSWORD }}"``): they never appear in reprs or errors.

    >>> AirflowAuth(kind="basic", username="admin", password="s3cret")
    AirflowAuth(kind='basic', username='admin', mwaa_environment=None, region=None, composer_environment=None)
    """

    kind: AuthKind = Field(default="basic", description="basic | token | mwaa | composer | astronomer")
    username: str | None = Field(default=None, description="basic: the Airflow user.")
    password: str | None = Field(default=None, repr=False, description="basic: the password (use {{ env.VAR }}).")
    token: str | None = Field(default=None, repr=False,
                              description="token / astronomer: the bearer token (use {{ env.VAR }}; astronomer falls back to $ASTRO_API_TOKEN).")
    mwaa_environment: str | None = Field(default=None, description="mwaa: the MWAA environment name.")
    region: str | None = Field(default=None, description="mwaa: the AWS region (default: boto3's).")
    composer_environment: str | None = Field(
        default=None, description="composer: projects/<p>/locations/<region>/environments/<name> (instead of webserver_url)."
    )


class DagSelection(Resolvable, Model):
    """Which DAGs to peer: all when empty; else those matching every given filter.

    >>> from airlift_protocol import ApiVersion
    >>> DagSelection(id_pattern="sales_*").keeps(DagInfo.from_rest({"dag_id": "sales_daily"}, api=ApiVersion.V2))
    True
    """

    ids: list[str] | None = Field(default=None, description="Exact DAG ids.")
    id_pattern: str | None = Field(default=None, description="A glob (fnmatch) on DAG ids, e.g. 'sales_*'.")
    tags: list[str] | None = Field(default=None, description="Keep DAGs carrying at least one of these Airflow tags.")

    def keeps(self, dag: DagInfo) -> bool:
        return self.dag_filter().keeps(dag)

    def dag_filter(self) -> DagFilter:
        """The same selection asked of Airflow's DAG list (server side)."""
        return DagFilter(ids=None if self.ids is None else tuple(self.ids), id_pattern=self.id_pattern,
                         tags=None if self.tags is None else tuple(self.tags))

    @property
    def empty(self) -> bool:
        return self.ids is None and self.id_pattern is None and self.tags is None


class SensorConfig(Resolvable, Model):
    """The sensor's settings (:class:`~airlift_dagster.SensorSettings`, durations in seconds)."""

    minimum_interval_seconds: int = Field(default=30, description="Seconds between sensor ticks.")
    default_status: Literal["running", "stopped"] = Field(default="running", description="The sensor's status until changed in the UI.")
    history_window_seconds: float = Field(default=SensorSettings.history_window.total_seconds(),
                                          description="How far back the first tick reports.")
    lateness_window_seconds: float = Field(default=SensorSettings.lateness_window.total_seconds(),
                                           description="How long a late commit is still caught.")
    max_rows_per_tick: int = Field(default=SensorSettings.max_rows_per_tick, description="Runs + task instances read per tick.")
    settle_seconds: float = Field(default=SensorSettings.settle.total_seconds(),
                                  description="Rows changed this recently wait for the next tick.")
    change_source: Literal["auto", "audit_log", "scan"] = Field(
        default="auto", description="How a tick learns what changed: Airflow's audit log (auto falls back to scanning, with a warning, "
                                    "when it cannot be read; audit_log fails the tick instead) or a scan of updated_at.")
    mirror_runs: bool = Field(default=False, description="Also show each Airflow DAG run as a Dagster run (nothing is launched).")

    def settings(self) -> SensorSettings:
        return SensorSettings(
            history_window=timedelta(seconds=self.history_window_seconds),
            lateness_window=timedelta(seconds=self.lateness_window_seconds),
            max_rows_per_tick=self.max_rows_per_tick,
            settle=timedelta(seconds=self.settle_seconds),
            change_source=self.change_source,
            mirror_runs=self.mirror_runs,
        )


class DagAssetsConfig(Resolvable, Model):
    """Options of the default :class:`~airlift_dagster.AirflowTranslator` for the DAG assets."""

    owners_from_dag: bool = Field(default=False, description="The DAG's Airflow owners become the asset's owners.")
    tags_from_dag: bool = Field(default=False, description="Each DAG tag becomes a Dagster tag of the asset.")
    source_code: bool | None = Field(default=None, description="Read each DAG's source from Airflow and show it on the DAG "
                                     "asset (false: one request per DAG file less on every state refresh; unset: read when "
                                     "at most 1,000 DAGs are selected).")


class DatasetsConfig(Resolvable, Model):
    """Map the Airflow 2 datasets / Airflow 3 assets of the selected DAGs to Dagster assets
    (:class:`~airlift_dagster.DatasetFilter`: regular expressions searched anywhere in the text).

    >>> DatasetsConfig(uri_pattern="^s3://").dataset_filter()
    DatasetFilter(dag_id_pattern=None, dag_tags=(), uri_pattern='^s3://')
    """

    enabled: bool = Field(default=True, description="Set false to keep the settings but map no dataset.")
    dag_id_pattern: str | None = Field(default=None, description="Only datasets of DAGs whose id matches this regular expression.")
    dag_tags: list[str] | None = Field(default=None, description="Only datasets of DAGs carrying one of these Airflow tags.")
    uri_pattern: str | None = Field(default=None, description="Only datasets whose URI matches this regular expression.")

    def dataset_filter(self) -> DatasetFilter:
        return DatasetFilter(dag_id_pattern=self.dag_id_pattern, dag_tags=tuple(self.dag_tags or ()), uri_pattern=self.uri_pattern)


@dataclass
class TaskMapping(Resolvable):
    """The Dagster assets an Airflow task builds (``dag_defs(dag_id, task_defs(task_id, *assets))``);
    without ``task_id``, the assets the DAG builds as a whole (``dag_defs(dag_id, *assets)``),
    materialized when a run of the DAG succeeds.

    ``by_key`` names assets by key (``"warehouse/loaded"``) that the project defines elsewhere, e.g.
    an ``@asset`` module in the defs folder or another component: they stay as defined (executable,
    so the task can migrate) and are mapped as the ``assets`` are.

    >>> TaskMapping(dag_id="d", task_id="load", by_key=["warehouse/loaded"]).keys_elsewhere()
    [AssetKey(['warehouse', 'loaded'])]
    """

    dag_id: str
    task_id: str | None = None
    assets: Sequence[ResolvedAssetSpec] = ()
    by_key: Sequence[str] = ()

    def keys_elsewhere(self) -> list[AssetKey]:
        return [AssetKey.from_user_string(key) for key in self.by_key]


class AirflowInstanceScaffolder(Scaffolder):  # type: ignore[type-arg]
    """``dg scaffold defs airlift_dagster.AirflowInstanceComponent <path>``: a ``defs.yaml`` reading the
    URL and credentials from the environment."""

    def scaffold(self, request: ScaffoldRequest) -> None:  # type: ignore[type-arg]
        scaffold_component(request, {
            "name": "airflow_instance_one",
            "webserver_url": "{{ env.AIRFLOW_URL }}",
            "auth": {"kind": "basic", "username": "{{ env.AIRFLOW_USERNAME }}", "password": "{{ env.AIRFLOW_PASSWORD }}"},
            "mappings": [],
            "sensor": {"minimum_interval_seconds": 30, "mirror_runs": False},
        })


@scaffold_with(AirflowInstanceScaffolder)
@dataclass
class AirflowInstanceComponent(StateBackedComponent, Resolvable):
    """An Airflow instance peered (one asset per DAG) and observed (its tasks' mapped assets) by a
    polling sensor, configured in YAML; its Airflow state is kept by Dagster (see the module docs).

    >>> component = AirflowInstanceComponent(name="prod", webserver_url="http://airflow:8080",
    ...                                      auth=AirflowAuth(username="admin", password="admin"))
    >>> component.defs_state_config.key
    'AirflowInstanceComponent[prod]'
    """

    name: str
    webserver_url: str | None = None
    auth: AirflowAuth = field(default_factory=AirflowAuth)
    dags: DagSelection = field(default_factory=DagSelection)
    mappings: Sequence[TaskMapping] = ()
    sensor: SensorConfig = field(default_factory=SensorConfig)
    datasets: DatasetsConfig | None = None
    dag_assets: DagAssetsConfig = field(default_factory=DagAssetsConfig)
    allow_unknown_ids: bool | list[str] = False
    defs_state: ResolvedDefsStateConfig = field(default_factory=lambda: DefsStateConfigArgs(
        management_type=DefsStateManagementType.LOCAL_FILESYSTEM, refresh_if_dev=False))

    @property
    def defs_state_config(self) -> DefsStateConfig:
        return DefsStateConfig.from_args(self.defs_state, default_key=f"AirflowInstanceComponent[{self.name}]")

    # ------------------------------------------------------------------------------------ Airflow
    def _where(self, key: str) -> str:
        return f"AirflowInstanceComponent {self.name!r}: attributes.{key}"

    def _auth_backend(self) -> AuthBackend:
        auth = self.auth
        url = self.webserver_url
        needs_url = auth.kind in ("basic", "token", "astronomer") or (auth.kind == "composer" and not auth.composer_environment)
        if needs_url and not url:
            raise AirliftDagsterError(f"{self._where('webserver_url')} is required for auth kind {auth.kind!r}")
        if auth.kind == "basic":
            if not auth.username or not auth.password:
                raise AirliftDagsterError(
                    f"{self._where('auth')}: kind basic needs username and password "
                    "(password: \"{{ env.AIRFLOW_PASSWORD }}\" reads it from the environment)"
                )
            return BasicAuthBackend(webserver_url=str(url), username=auth.username, password=auth.password)
        if auth.kind == "token":
            if not auth.token:
                raise AirliftDagsterError(f"{self._where('auth')}: kind token needs token (e.g. \"{{{{ env.AIRFLOW_TOKEN }}}}\")")
            return TokenAuthBackend(webserver_url=str(url), token=auth.token)
        if auth.kind == "astronomer":
            try:
                return AstronomerAuthBackend(str(url), token=auth.token or None)
            except ValueError as e:
                raise AirliftDagsterError(f"{self._where('auth')}: {e}") from e
        if auth.kind == "composer":
            if auth.composer_environment:
                return ComposerAuthBackend(environment=auth.composer_environment)
            return ComposerAuthBackend(webserver_url=url)
        if not auth.mwaa_environment:
            raise AirliftDagsterError(f"{self._where('auth')}: kind mwaa needs mwaa_environment")
        try:
            from airlift_client.mwaa import MwaaSessionAuthBackend
        except ImportError as e:
            raise AirliftDagsterError(f"{self._where('auth')}: kind mwaa needs the mwaa extra: pip install 'airlift-dagster[mwaa]'") from e
        return MwaaSessionAuthBackend(environment_name=auth.mwaa_environment, region_name=auth.region)

    def build_airflow_instance(self) -> AirflowInstance:
        """The client this component's sensor (and a state refresh) uses; building it makes no request."""
        try:
            return AirflowInstance(auth_backend=self._auth_backend(), name=self.name)
        except ValueError as e:
            raise AirliftDagsterError(f"{self._where('name')}: {e}") from e

    def _dag_filter(self) -> DagFilter | None:
        return None if self.dags.empty else self.dags.dag_filter()

    def _dataset_filter(self) -> DatasetFilter | None:
        if self.datasets is None or not self.datasets.enabled:
            return None
        try:
            return self.datasets.dataset_filter()
        except ValueError as e:
            raise AirliftDagsterError(f"{self._where('datasets')}: {e}") from e

    # ------------------------------------------------------------------------- extension points
    def get_translator(self) -> AirflowTranslator | None:
        """Override in a subclass to choose asset keys and specs of DAGs and datasets
        (:class:`~airlift_dagster.AirflowTranslator`; honour ``self.dag_assets`` if you keep its options)."""
        return AirflowTranslator(owners_from_dag=self.dag_assets.owners_from_dag, tags_from_dag=self.dag_assets.tags_from_dag)

    def get_event_transformer(self) -> EventTransformer | None:
        """Override in a subclass to add, change or drop the sensor's events of a tick
        (:class:`~airlift_dagster.EventTransformer`); ``None``: emit them as built."""
        return None

    # ------------------------------------------------------------------------------ state-backed
    def write_state_to_path(self, state_path: Path) -> None:
        """Read DAGs, tasks and sources from Airflow (``dg utils refresh-defs-state``) and store them."""
        state = fetch_airflow_state(self.build_airflow_instance(), dag_filter=self._dag_filter(),
                                    include_sources=self.dag_assets.source_code,
                                    include_datasets=self._dataset_filter() is not None,
                                    expected_dag_ids={m.dag_id for m in self.mappings})
        state_path.write_text(state.to_json())

    def build_defs_from_state(self, context: ComponentLoadContext, state_path: Path | None) -> Definitions:
        """Definitions from the stored state: no Airflow request (none stored yet: no definitions, and
        a log line saying how to store it)."""
        if state_path is None:
            log.warning(
                "airlift: %s has no stored Airflow state yet (key %r): run `dg utils refresh-defs-state` in the "
                "project to read it from Airflow; until then it defines nothing",
                f"AirflowInstanceComponent {self.name!r}", self.defs_state_config.key,
            )
            return Definitions()
        try:
            state = AirflowInstanceState.from_json(state_path.read_text())
        except (ValueError, KeyError, TypeError) as e:
            raise AirliftDagsterError(
                f"AirflowInstanceComponent {self.name!r}: the stored Airflow state {state_path} cannot be read ({e}); "
                "run `dg utils refresh-defs-state` again"
            ) from e
        if state.instance_name != self.name:
            raise AirliftDagsterError(
                f"AirflowInstanceComponent {self.name!r}: the stored state (key {self.defs_state_config.key!r}) is of instance "
                f"{state.instance_name!r}; give each component its own defs_state.key, then run `dg utils refresh-defs-state`"
            )
        dataset_filter = self._dataset_filter()
        if dataset_filter is not None and not state.datasets_read:
            log.warning(
                "airlift: AirflowInstanceComponent %r maps datasets, but its stored Airflow state was written without "
                "them: run `dg utils refresh-defs-state` to read them; until then no dataset is mapped", self.name,
            )
        selection = self._dag_filter()
        if selection is not None:  # a narrower selection applies without a refresh; a wider one needs one
            state = replace(state, dags=tuple(d for d in state.dags if selection.keeps(d)))
        return build_defs_from_airflow_instance(
            airflow_instance=self.build_airflow_instance(),
            defs=self._user_defs(),
            airflow_state=state,
            sensor_minimum_interval_seconds=self.sensor.minimum_interval_seconds,
            default_sensor_status=DefaultSensorStatus.RUNNING if self.sensor.default_status == "running" else DefaultSensorStatus.STOPPED,
            allow_unknown_ids=self.allow_unknown_ids,
            sensor_settings=self.sensor.settings(),
            datasets=dataset_filter or False,
            translator=self.get_translator(),
            event_transformer=self.get_event_transformer(),
            mapped_elsewhere=self._mapped_elsewhere(),
        )

    def _user_defs(self) -> Definitions:
        return self._mapped([(m, list(m.assets)) for m in self.mappings])

    def _mapped_elsewhere(self) -> list[AssetSpec]:
        """The ``by_key`` assets as specs carrying only their key and the mapping (not defined here)."""
        mapped = self._mapped([(m, [AssetSpec(key) for key in m.keys_elsewhere()]) for m in self.mappings])
        return [spec for spec in mapped.assets or () if isinstance(spec, AssetSpec)]

    @staticmethod
    def _mapped(parts_of: Sequence[tuple[TaskMapping, list[AssetSpec]]]) -> Definitions:
        by_dag: dict[str, list[Definitions]] = {}
        for mapping, specs in parts_of:
            if not specs:
                continue
            part = task_defs(mapping.task_id, *specs) if mapping.task_id is not None else Definitions(assets=specs)
            by_dag.setdefault(mapping.dag_id, []).append(part)
        return Definitions.merge(*(dag_defs(dag_id, *parts) for dag_id, parts in by_dag.items())) if by_dag else Definitions()
