"""docker-compose.yml, the Dockerfile, Prometheus config and rules, and the Grafana
dashboard: they parse, fit together, use real config keys and query only metric
names the code exports. (No Docker engine here: structure only.)"""

from __future__ import annotations

import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

import tiermem
from tests.conftest import OpenStore
from tiermem.config import Config, SchedulerConfig

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
CLI_VARS = {"TIERMEM_PATH", "TIERMEM_CONFIG"}  # options of the tiermem command, not Config keys
PROMQL_WORDS = {"up"}  # series Prometheus makes itself
SUFFIXES = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = load_yaml(ROOT / "docker-compose.yml")
    return data


@pytest.fixture
def exported(open_store: OpenStore) -> dict[str, set[str]]:
    """Metric (sample) names an engine's registry exports -> their label names."""
    mem = open_store()
    ids = [mem.add(f"memory {i}", namespace="n").id for i in range(3)]
    mem.get(ids[0])
    mem.search("memory", namespace="n", k=2)
    mem.run("demote")
    out: dict[str, set[str]] = {}
    for family in mem.metrics.registry.collect():
        names = [family.name + s for s in SUFFIXES.get(family.type, [""])]
        labels = {k for s in family.samples for k in s.labels} - {"le"}
        for name in names:
            out[name] = labels | ({"le"} if name.endswith("_bucket") else set())
    # label names of metrics without samples yet (e.g. no eviction happened)
    for metric in vars(mem.metrics).values():
        names = getattr(metric, "_labelnames", None)
        if names is not None:
            base = metric._name
            for name in [n for n in out if n == base or n.startswith(base + "_")]:
                out[name] |= set(names)
    return out


def metric_names(expr: str) -> set[str]:
    """tiermem_* metric names in a PromQL expression."""
    return set(re.findall(r"\btiermem_[a-z0-9_]+", expr))


def check_expr(expr: str, exported: dict[str, set[str]], where: str) -> None:
    names = metric_names(expr)
    assert names, f"{where}: queries no tiermem metric: {expr}"
    unknown = names - set(exported)
    assert not unknown, f"{where}: {sorted(unknown)} are not exported"
    for name, matchers in re.findall(r"\b(tiermem_[a-z0-9_]+)\{([^}]*)\}", expr):
        for label in re.findall(r"([a-z_]+)\s*(?:=~|!~|!=|=)", matchers):
            assert label in exported[name], f"{where}: {name} has no label {label!r}"
    known = set().union(*exported.values()) | {"instance", "job", "le"}
    for group in re.findall(r"\b(?:by|on|ignoring)\s*\(([^)]*)\)", expr):
        for label in filter(None, (x.strip() for x in group.split(","))):
            assert label in known, f"{where}: no exported metric has label {label!r}"


# -- docker-compose.yml ------------------------------------------------------------------


def test_compose_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"redis", "worker", "prometheus", "grafana"} <= set(services)
    redis = services["redis"]
    assert "--appendonly" in redis["command"]
    assert redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    assert redis["healthcheck"]["test"][:2] == ["CMD", "redis-cli"]
    worker = services["worker"]
    assert worker["build"]["dockerfile"] == "configs/Dockerfile"
    assert (ROOT / worker["build"]["context"] / worker["build"]["dockerfile"]).is_file()
    cmd = worker["command"]
    assert cmd[0] == "worker" and cmd[cmd.index("--metrics-port") + 1] == "9108"
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "healthcheck" in worker
    assert worker["environment"]["TIERMEM_L1__URL"] == "redis://redis:6379/0"
    # every published port binds 127.0.0.1 on the host
    for svc in services.values():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:")


def test_compose_volumes(compose: dict[str, Any]) -> None:
    services, named = compose["services"], set(compose["volumes"])
    data = services["worker"]["environment"]["TIERMEM_PATH"]
    mounts = {v.split(":")[0]: v.split(":")[1] for v in services["worker"]["volumes"]}
    assert mounts["tiermem-data"] == data  # the data dir is a named volume
    assert "tiermem-data:" + data in services["cli"]["volumes"]  # shared with one-off commands
    assert "redis-data:/data" in services["redis"]["volumes"]
    for svc in services.values():
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("."):
                assert (ROOT / src).exists(), f"{src} is mounted but missing"
            else:
                assert src in named, f"volume {src} is not declared"


def _check_key(model: type[BaseModel], path: list[str], var: str) -> None:
    field = model.model_fields.get(path[0])
    assert field is not None, f"{var}: no config key {path[0]!r}"
    if len(path) > 1:
        sub = field.annotation
        assert isinstance(sub, type) and issubclass(sub, BaseModel), f"{var}: not a section"
        _check_key(sub, path[1:], var)


def test_compose_env_vars_are_config_keys(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = 0
    for svc in compose["services"].values():
        env = svc.get("environment", {})
        for var, val in env.items():
            if not var.startswith("TIERMEM_") or var in CLI_VARS:
                continue
            key = var.removeprefix("TIERMEM_").lower().split("__")
            _check_key(Config, key, var)
            monkeypatch.setenv(var, str(val))
            cfg = tiermem.load_config(None)
            got: Any = cfg
            for part in key:
                got = getattr(got, part)
            assert str(got) == str(val), var
            monkeypatch.delenv(var)
            seen += 1
    assert seen >= 3


def test_dockerfile() -> None:
    text = (CONFIGS / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.1[1-9]", text, re.M)
    assert 'ENTRYPOINT ["tiermem"]' in text
    assert "--metrics-port" in text and "9108" in text
    for src in re.findall(r"^COPY (\S+)", text, re.M):
        assert (ROOT / src).exists(), src


def test_default_toml_documents_the_config_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in [v for v in os.environ if v.startswith("TIERMEM_")]:
        monkeypatch.delenv(var)
    path = CONFIGS / "default.toml"
    assert tiermem.load_config(path) == tiermem.load_config(None)
    with path.open("rb") as fh:
        scheduler = tomllib.load(fh)["scheduler"]
    assert set(scheduler) == set(SchedulerConfig.model_fields)  # every key, documented


# -- Prometheus -----------------------------------------------------------------------------


def test_prometheus_scrapes_the_worker(compose: dict[str, Any]) -> None:
    prom = load_yaml(CONFIGS / "prometheus.yml")
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == "tiermem")
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    assert "worker:9108" in targets
    mounted = compose["services"]["prometheus"]["volumes"]
    for rules in prom["rule_files"]:
        assert any(v.endswith(f":{rules}:ro") for v in mounted)
    assert "./configs/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in mounted


def test_alert_rules_reference_real_metrics(exported: dict[str, set[str]]) -> None:
    rules = [r for g in load_yaml(CONFIGS / "alerts.yml")["groups"] for r in g["rules"]]
    names = {r["alert"] for r in rules}
    for wanted in ("NearCapacity", "HitRatioDrop", "NotSucceeding", "ErrorRate", "Unreachable"):
        assert any(wanted in n for n in names), wanted
    for rule in rules:
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"]
        expr = rule["expr"]
        if metric_names(expr):
            check_expr(expr, exported, rule["alert"])
        else:
            assert set(re.findall(r"\b([a-z_]+)\{", expr)) <= PROMQL_WORDS, rule["alert"]


# -- Grafana ---------------------------------------------------------------------------------


def test_dashboard_queries_only_exported_metrics(exported: dict[str, set[str]]) -> None:
    dash = json.loads((CONFIGS / "grafana-dashboard.json").read_text())
    panels = dash["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    queried: set[str] = set()
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            check_expr(target["expr"], exported, panel["title"])
            queried |= metric_names(target["expr"])
    for name in (
        "tiermem_tier_items",
        "tiermem_tier_bytes",
        "tiermem_hits_total",
        "tiermem_op_seconds_bucket",
        "tiermem_moves_total",
        "tiermem_job_last_success_timestamp_seconds",
        "tiermem_errors_total",
        "tiermem_redis_up",
    ):
        assert name in queried, f"no panel shows {name}"


def test_grafana_provisioning(compose: dict[str, Any]) -> None:
    prov = CONFIGS / "grafana" / "provisioning"
    ds = load_yaml(prov / "datasources" / "prometheus.yml")["datasources"][0]
    assert ds["type"] == "prometheus" and ds["url"] == "http://prometheus:9090"
    board = load_yaml(prov / "dashboards" / "tiermem.yml")["providers"][0]
    mounts = compose["services"]["grafana"]["volumes"]
    dashboards = board["options"]["path"]
    assert f"./configs/grafana-dashboard.json:{dashboards}/tiermem.json:ro" in mounts
    dash = json.loads((CONFIGS / "grafana-dashboard.json").read_text())
    uids = {t["datasource"]["uid"] for p in dash["panels"] for t in p["targets"]}
    assert uids == {ds["uid"]}
