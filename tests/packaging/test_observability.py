"""deploy/grafana and deploy/prometheus: the alert rules pass `promtool check rules` and fire
in promtool's own unit tests, every dashboard query is valid PromQL, and every metric they
name is one a real server process exposes on GET /metrics (scraped after a few requests)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from inference_server.models.install_default import install_default_models
from tests.helpers.server_process import DEFAULT_REPO, ServerProcess

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "edge-inference.json"
RULES = ROOT / "deploy" / "prometheus" / "edge-inference.rules.yml"
RULES_TEST = Path(__file__).with_name("prometheus_rules_test.yml")
IMAGE = ROOT / "tests" / "fixtures" / "images" / "street_people.jpg"
TOKEN = "observability-token"
METRIC = re.compile(r"\bedge_inference_[a-z0-9_]+\b")
# What each metric type puts on the wire (Prometheus text format, prometheus-client).
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
}


def _dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    queries = [
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    ]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            queries.append(variable["definition"])
    return queries


def _rule_expressions() -> list[str]:
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def _promtool() -> str:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    return promtool


def test_rules_pass_promtool_check() -> None:
    result = subprocess.run(
        [_promtool(), "check", "rules", str(RULES)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 4 rules found" in result.stdout


def test_alerts_fire_in_promtool_unit_tests() -> None:
    """Backend down, queue near full, camera stalled, LLM upstream down: each fires after
    its `for:` and not before (prometheus_rules_test.yml)."""
    result = subprocess.run(
        [_promtool(), "test", "rules", RULES_TEST.name],
        capture_output=True, text=True, timeout=60, check=False, cwd=RULES_TEST.parent,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses each panel's query, as recording rules, with Grafana's variables set."""
    queries = _dashboard_queries()
    assert len(queries) >= 15
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {
                        "record": f"dashboard:query_{i}",
                        "expr": q.replace("$__rate_interval", "2m").replace("$instance", ".*"),
                    }
                    for i, q in enumerate(queries)
                    if not q.startswith("label_values(")
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(rules), encoding="utf-8")
    result = subprocess.run(
        [_promtool(), "check", "rules", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_covers_what_the_issue_lists() -> None:
    queries = "\n".join(_dashboard_queries())
    for metric in (
        "edge_inference_requests_total",  # requests
        "edge_inference_inference_seconds_bucket",  # latency per pipeline and model
        "edge_inference_queue_depth",
        "edge_inference_batch_size_sum",
        "edge_inference_backend_ready",
        "edge_inference_camera_frames_total",  # camera fps
        "edge_inference_request_seconds_bucket",  # speech (and every route) latency
        "edge_inference_llm_time_to_first_token_seconds_bucket",
        "edge_inference_llm_tokens_per_second_bucket",
    ):
        assert metric in queries, metric


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """GET /metrics of a real server after a few detections, an auth failure and a 404."""
    install_default_models(DEFAULT_REPO)
    server = ServerProcess(
        tmp_path_factory.mktemp("metrics"), mqtt_port=None, token=TOKEN, model_repo=DEFAULT_REPO
    )
    server.start()
    try:
        for _ in range(3):
            request = urllib.request.Request(
                f"{server.url}/api/v1/vision/detect",
                data=IMAGE.read_bytes(),
                headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "image/jpeg"},
            )
            with urllib.request.urlopen(request, timeout=60) as resp:
                assert resp.status == 200
        for path in ("/api/v1/info", "/api/v1/no-such-route"):
            with pytest.raises(urllib.error.HTTPError):
                urllib.request.urlopen(f"{server.url}{path}", timeout=10)
        # Readiness and queue gauges are refreshed by the stats tick: wait for one.
        text = ""
        for _ in range(50):
            scrape = urllib.request.Request(
                f"{server.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}
            )
            with urllib.request.urlopen(scrape, timeout=10) as resp:
                text = resp.read().decode()
            if "edge_inference_backend_ready{" in text:
                break
            subprocess.run(["sleep", "0.2"], check=True)
        families = list(text_string_to_metric_families(text))
        yield {"text": text, "families": families}
    finally:
        server.stop()


def _exposed_names(families: list[Any]) -> set[str]:
    names: set[str] = set()
    for family in families:
        for suffix in SUFFIXES.get(family.type, ("",)):
            names.add(family.name + suffix)
    return names


def test_every_metric_named_is_exposed_by_the_server(scraped: dict[str, Any]) -> None:
    exposed = _exposed_names(scraped["families"])
    named = {m for text in _dashboard_queries() + _rule_expressions() for m in METRIC.findall(text)}
    assert named, "no metric names found"
    assert named <= exposed, sorted(named - exposed)


def test_requests_show_up_in_the_metrics(scraped: dict[str, Any]) -> None:
    """The series behind the panels carry data, with the labels the panels group by."""
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {
        (s.name, tuple(sorted(s.labels.items()))): float(s.value)
        for family in scraped["families"]
        for s in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return sum(
            v for (n, lab), v in samples.items()
            if n == name and labels.items() <= dict(lab).items()
        )  # fmt: skip

    detect = "/api/v1/vision/detect"
    assert value("edge_inference_requests_total", route=detect, status="200") == 3
    assert value("edge_inference_request_seconds_count", route=detect) == 3
    assert value("edge_inference_requests_total", status="401") == 2  # both: no token
    assert value("edge_inference_inference_seconds_count", pipeline="vision") == 3
    assert value("edge_inference_batch_size_count") >= 1
    assert value("edge_inference_backend_ready", backend="local") == 1
    assert value("edge_inference_queue_limit") == 64
