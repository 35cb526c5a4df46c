"""The generated Grafana dashboards: committed copies are fresh, every query is valid PromQL over real metrics."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from coffee_scraper.cli import app
from coffee_scraper.observability import dashboards as d
from coffee_scraper.observability import metrics

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMMITTED = DEPLOY / "grafana" / "dashboards"
BOARDS = d.dashboards()

# PromQL words that are neither functions (those are followed by "(") nor metric names
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset"}
GRAFANA_VARIABLE = re.compile(r"\$\{?(\w+)(?::\w+)?\}?")


def exposed_metric_names() -> set[str]:
    """Every sample name the app's registry can expose (metrics.py + the system collector), plus ``up``."""
    names = {"up"}
    for family in metrics.REGISTRY.collect():
        if family.type == "counter":
            names |= {f"{family.name}_total", f"{family.name}_created"}
        elif family.type == "histogram":
            names |= {f"{family.name}{s}" for s in ("_bucket", "_sum", "_count", "_created")}
        else:
            names.add(family.name)
    return names


def metric_names_in(expr: str) -> set[str]:
    """Metric names of a PromQL expression: identifiers left once strings, matchers, ranges and groupings go."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\()?", text):
        word, call = match.group(1), match.group(2)
        if not call and word not in KEYWORDS:
            names.add(word)
    return names


def for_promtool(expr: str) -> str:
    """Grafana's variables replaced by values PromQL accepts ($__rate_interval -> 5m, $roaster -> .*)."""

    def value(match: re.Match[str]) -> str:
        return "5m" if match.group(1).startswith("__") else ".*"

    return GRAFANA_VARIABLE.sub(value, expr)


def all_expressions() -> list[tuple[str, str]]:
    return [
        (f"{name}: {p['title']}", t["expr"]) for name, b in BOARDS.items() for p in b["panels"] for t in p["targets"]
    ]


def check_rules(promtool: str, tmp_path: Path, exprs: list[str]) -> subprocess.CompletedProcess[str]:
    rules = [{"record": f"lint:dashboard_expr_{i}", "expr": e} for i, e in enumerate(exprs)]
    path = tmp_path / "lint.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "lint", "rules": rules}]}, sort_keys=False))
    return subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)


# --- generation ----------------------------------------------------------------------------------------------


def test_the_five_dashboards_exist() -> None:
    titles = {b["title"].split(" / ")[-1] for b in BOARDS.values()}
    assert titles == {"Overview", "Scraping per roaster", "Storage", "Incidents", "System"}
    assert len({b["uid"] for b in BOARDS.values()}) == len(BOARDS)


def test_committed_dashboards_equal_a_fresh_export() -> None:
    committed = {p.name for p in COMMITTED.glob("*.json")}
    assert committed == set(BOARDS), "run: coffee-scraper export grafana-dashboards"
    for name, board in BOARDS.items():
        assert (COMMITTED / name).read_text(encoding="utf-8") == d.render(board), (
            f"{name} is stale; run: coffee-scraper export grafana-dashboards"
        )


def test_export_command_writes_one_json_per_dashboard(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["export", "grafana-dashboards", "--out", str(tmp_path / "boards")])
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in (tmp_path / "boards").iterdir())
    assert written == sorted(BOARDS)
    for name in written:
        board = json.loads((tmp_path / "boards" / name).read_text())
        assert board["schemaVersion"] == d.SCHEMA_VERSION
        assert board["panels"], name


def test_panels_have_unique_ids_and_fit_the_grid() -> None:
    for name, board in BOARDS.items():
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), name
        for p in board["panels"]:
            g = p["gridPos"]
            assert g["x"] >= 0 and g["x"] + g["w"] <= 24, (name, p["title"])
            assert p["targets"], (name, p["title"])


def test_the_roaster_variable_templates_the_scraping_dashboard() -> None:
    board = BOARDS["coffee-scraper-scraping.json"]
    (variable,) = board["templating"]["list"]
    assert variable["name"] == "roaster"
    assert variable["definition"] == "label_values(coffee_scraper_fetch_requests_total, roaster)"
    assert all('roaster=~"$roaster"' in t["expr"] for p in board["panels"] for t in p["targets"])


# --- datasource --------------------------------------------------------------------------------------------


def _datasources(node: Any) -> list[Any]:
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            found += [value] if key == "datasource" else _datasources(value)
    elif isinstance(node, list):
        for item in node:
            found += _datasources(item)
    return found


def test_every_panel_query_and_variable_uses_the_one_datasource() -> None:
    for name, board in BOARDS.items():
        used = _datasources(board)
        panel_count = len(board["panels"]) + sum(len(p["targets"]) for p in board["panels"])
        assert len(used) >= panel_count, name
        assert all(ds == {"type": "prometheus", "uid": d.DATASOURCE_UID} for ds in used), name


def test_provisioned_datasource_uid_matches_the_dashboards() -> None:
    config = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    (source,) = config["datasources"]
    assert source["uid"] == d.DATASOURCE_UID
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    for name in BOARDS:
        committed = json.loads((COMMITTED / name).read_text())
        assert {ds["uid"] for ds in _datasources(committed)} == {source["uid"]}, name


# --- PromQL ------------------------------------------------------------------------------------------------


def test_metric_name_extraction_sees_through_promql_syntax() -> None:
    expr = (
        'time() - max by (roaster) (a_b{x="by (y)"}) + sum(rate(c_total{r=~"$roaster"}[$__rate_interval])) or vector(0)'
    )
    assert metric_names_in(expr) == {"a_b", "c_total"}


@pytest.mark.parametrize(("where", "expr"), all_expressions(), ids=[w for w, _ in all_expressions()])
def test_dashboard_queries_use_only_exported_metrics(where: str, expr: str) -> None:
    names = metric_names_in(expr)
    assert names, f"{where}: no metric found in {expr!r}"
    unknown = names - exposed_metric_names()
    assert not unknown, f"{where}: {sorted(unknown)} are not exposed by metrics.py / the system collector"


def test_variable_queries_use_only_exported_metrics() -> None:
    for board in BOARDS.values():
        for query in d.variable_queries(board):
            match = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", query)
            assert match, query
            assert match.group(1) in exposed_metric_names()


def test_every_dashboard_query_passes_promtool(promtool: str, tmp_path: Path) -> None:
    exprs = all_expressions()
    done = check_rules(promtool, tmp_path, [for_promtool(e) for _, e in exprs])
    listing = "\n".join(f"lint:dashboard_expr_{i}  {w}: {e}" for i, (w, e) in enumerate(exprs))
    assert done.returncode == 0, f"{done.stdout}{done.stderr}\n{listing}"
    assert f"SUCCESS: {len(exprs)} rules found" in done.stdout


def test_the_promtool_lint_rejects_bad_promql(promtool: str, tmp_path: Path) -> None:
    done = check_rules(promtool, tmp_path, ["sum by (roaster) (rate(coffee_scraper_fetch_requests_total[5m])) by"])
    assert done.returncode != 0


def test_error_ratio_panel_is_the_alerted_expression() -> None:
    from coffee_scraper.incidents.alert_config import load_alert_config

    rule = load_alert_config().rule("HighRPCErrorRate")
    (panel,) = [p for p in BOARDS["coffee-scraper-overview.json"]["panels"] if p["title"].startswith("Error ratio")]
    assert rule.expr is not None
    assert rule.expr.startswith(panel["targets"][0]["expr"] + " > ")
