"""The monitoring stack end to end: a real Prometheus scrapes ``mlwarden serve`` and loads the
shipped alert rules; an extraction attack, a drift shift and a guard failing open make their
alerts fire, and every Grafana panel's query returns data from that Prometheus.

The rules are the shipped ones, unchanged: the alerts this test waits for have no ``for:``
delay. The fast unit tests at the bottom check the dashboard without a server: every query
parses (``promtool check rules`` on the queries as recording rules) and names only metrics the
server registers.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import httpx2
import pytest
import yaml
from prometheus_client import generate_latest

from mlwarden import datasets
from mlwarden.serve import SERVE_DB, KeyStore
from mlwarden.serve._metrics import ServerMetrics
from tests._polling import free_port, wait_until
from tests.cli.test_cli import EXE

PROMETHEUS_DIR = Path(str(resources.files("mlwarden.serve").joinpath("prometheus")))
RULES = PROMETHEUS_DIR / "mlwarden-rules.yaml"
DASHBOARD = PROMETHEUS_DIR / "grafana-dashboard.json"
PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")

#: Alerts the driven traffic must fire, and (by the set's equality) the only ones.
EXPECTED_FIRING = {"MlwardenExtractionAlarm", "MlwardenInputDrift", "MlwardenGuardFailingOpen"}

DEPLOYMENT = {
    "routes": [{"model": "phish@1"}, {"model": "phish@2"}],
    "rate_limit": {"rate_per_s": 100000, "burst": 200},
    "guards": {
        "drift": {"window": 100, "every": 100},
        "decisions": {"on_error": "open", "max_delay_s": 1.0},
    },
    "efficacy": {"window": 200, "min_labelled": 10},
}

T = TypeVar("T")

needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None,
    reason="the prometheus binary is not installed (CI installs it: scripts/promtool-for-tests.sh)",
)


def panel_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query target in the dashboard."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def _family(name: str) -> str:
    return re.sub(r"_(total|bucket|count|sum|created)$", "", name)


# -- the stack --------------------------------------------------------------------------------


@dataclass
class Stack:
    """A guarded server and the Prometheus scraping it, both real processes."""

    server: str
    prometheus: str
    keys: dict[str, str]
    store: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def post(self, path: str, body: dict[str, Any], key: str) -> httpx2.Response:
        return httpx2.post(
            self.server + path, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = httpx2.get(self.prometheus + "/api/v1/query", params={"query": expr}, timeout=10)
        assert answer.status_code == 200, f"{expr}: {answer.text}"
        result: list[dict[str, Any]] = answer.json()["data"]["result"]
        return result

    def firing(self) -> set[str]:
        alerts = httpx2.get(self.prometheus + "/api/v1/alerts", timeout=10).json()["data"]
        return {a["labels"]["alertname"] for a in alerts["alerts"] if a["state"] == "firing"}


def _start(args: list[str], log: Path, ready: Callable[[], bool], what: str) -> Any:
    with log.open("wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)

    def up() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"{what} exited {process.returncode}: {log.read_text()[-2000:]}")
        try:
            return ready()
        except httpx2.TransportError:
            return False

    try:
        wait_until(up, 30, what)
    except BaseException:
        _stop(process)
        raise
    return process


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def stack(store_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """``mlwarden serve`` (phish@1 and phish@2 as A/B arms) and Prometheus scraping it every
    second with the shipped rules, evaluated every second."""
    assert PROMETHEUS is not None and EXE is not None
    tmp = tmp_path_factory.mktemp("monitoring")
    keys = KeyStore(store_root / SERVE_DB)
    roles = {"feedback": keys.create("feedback", "soc"), "admin": keys.create("admin", "scraper")}
    keys.close()
    deploy = tmp / "deploy.yaml"
    deploy.write_text(yaml.safe_dump(DEPLOYMENT))
    port, prom_port = free_port(), free_port()
    server = f"http://127.0.0.1:{port}"
    prometheus = f"http://127.0.0.1:{prom_port}"
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {
                "job_name": "mlwarden",
                "scrape_interval": "1s",
                "authorization": {"credentials": roles["admin"]},
                "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
            }
        ],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    s = Stack(server, prometheus, roles, store_root)
    serve = ["serve", "--config", str(deploy), "--store", str(store_root), "--port", str(port)]
    s.processes.append(
        _start(
            [EXE, *serve],
            tmp / "serve.log",
            lambda: httpx2.get(server + "/readyz").status_code == 200,
            "mlwarden serve",
        )
    )
    try:
        s.processes.append(
            _start(
                [
                    PROMETHEUS,
                    f"--config.file={tmp / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                ],
                tmp / "prometheus.log",
                lambda: httpx2.get(prometheus + "/-/ready").status_code == 200,
                "prometheus",
            )
        )
        # The counters' zeros are scraped before anything happens, so increase() sees the rise.
        wait_until(
            lambda: s.query('mlwarden_guard_alarms_total{guard="extraction"}'),
            20,
            "the first scrape of the server",
        )
        yield s
    finally:
        for process in reversed(s.processes):
            _stop(process)


def _rows(frame: Any) -> list[dict[str, int]]:
    return [{k: int(v) for k, v in r.items()} for r in frame.to_dict("records")]


@pytest.fixture(scope="module")
def driven(stack: Stack) -> Stack:
    """The stack after benign traffic with feedback on both arms, a drift shift, an extraction
    attack, a bad key and the decision log failing open."""
    from mlwarden.attacks import uniform_noise

    phishing = datasets.load("phishing")
    held_out = phishing.X.sample(n=400, random_state=5)
    truth = phishing.y.loc[held_out.index].astype(str).tolist()
    held_out = held_out.reset_index(drop=True)
    keys = KeyStore(stack.store / SERVE_DB)
    try:
        # Benign analysts, until both arms have answered some (the split is sticky per key).
        arms: dict[str, list[tuple[str, int]]] = {"phish@1": [], "phish@2": []}
        start = 0
        while min(len(v) for v in arms.values()) < 2 and start + 20 <= len(held_out):
            key = keys.create("predict", f"analyst-{start}")
            answer = stack.post("/v1/predict", {"rows": _rows(held_out[start : start + 20])}, key)
            assert answer.status_code == 200, answer.text
            arms[answer.json()["model"]].append((answer.json()["request_id"], start))
            start += 20
        assert min(len(v) for v in arms.values()) >= 2, "the A/B split never used both arms"
        for request_id, first in (r for answered in arms.values() for r in answered):
            body = {"request_id": request_id, "labels": truth[first : first + 20]}
            stored = stack.post("/v1/feedback", body, stack.keys["feedback"])
            assert stored.status_code == 200, stored.text
        # A partner whose traffic shifted: two features pinned to their phishing value.
        partner = keys.create("predict", "partner")
        shifted = [
            {**r, "SSLfinal_State": -1, "URL_of_Anchor": -1} for r in _rows(held_out[200:400])
        ]
        for chunk in (shifted[:100], shifted[100:]):
            assert stack.post("/v1/predict", {"rows": chunk}, partner).status_code == 200
        # A thief querying uniform noise: refused whole, then blocked.
        thief = keys.create("predict", "thief")
        noise = _rows(uniform_noise(phishing.X, 200, phishing.schema, seed=0))
        stolen = stack.post("/v1/predict", {"rows": noise}, thief)
        assert stolen.status_code == 403, stolen.text
        assert stack.post("/v1/predict", {"rows": _rows(held_out[:1])}, thief).status_code == 403
        assert stack.post("/v1/predict", {"rows": []}, "mlw_nope_nope").status_code == 401
    finally:
        keys.close()
    # Another process holds the serving database's write lock: the log stalls and, set to
    # fail open, the server answers and says so.
    lock = sqlite3.connect(stack.store / SERVE_DB, timeout=5, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    try:
        wait_until(
            lambda: (
                "X-Mlwarden-Fail-Open"
                in stack.post("/v1/predict", {"rows": _rows(held_out[:1])}, partner).headers
            ),
            15,
            "a fail-open answer while the decision log is locked",
        )
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    return stack


# -- end to end -------------------------------------------------------------------------------


@pytest.mark.slow
@needs_prometheus
def test_prometheus_fires_the_alerts_of_a_real_attack_drift_and_failing_open(
    driven: Stack,
) -> None:
    firing = wait_until(
        driven.firing, 20, f"alerts {sorted(EXPECTED_FIRING)} firing", EXPECTED_FIRING.issubset
    )
    assert firing == EXPECTED_FIRING  # and no false alarm (errors, latency, efficacy)
    (fail_open,) = [
        a
        for a in httpx2.get(driven.prometheus + "/api/v1/alerts").json()["data"]["alerts"]
        if a["labels"]["alertname"] == "MlwardenGuardFailingOpen" and a["state"] == "firing"
    ]
    assert fail_open["labels"]["guard"] == "decisions"


@pytest.mark.slow
@needs_prometheus
def test_every_dashboard_panel_query_returns_data(driven: Stack) -> None:
    queries = panel_queries()
    missing: list[tuple[str, str]] = []

    def answered() -> bool:
        missing[:] = [q for q in queries if not driven.query(q[1])]
        return not missing

    with contextlib.suppress(AssertionError):
        wait_until(answered, 20, "every panel query to return data")
    assert not missing, f"panels whose query returned no data: {missing}"
    arms = {
        (r["metric"]["version"], r["metric"]["arm"]) for r in driven.query("mlwarden_efficacy_f1")
    }
    assert arms == {("1", "a"), ("2", "b")}
    (alarms,) = driven.query('mlwarden_guard_alarms_total{guard="extraction"}')
    assert float(alarms["value"][1]) >= 1


# -- fast: the dashboard and the counters, without a server -----------------------------------


def _exposition() -> str:
    return generate_latest(ServerMetrics().registry).decode()


def test_every_metric_the_dashboard_names_is_one_the_server_registers() -> None:
    exposed = {_family(n) for n in re.findall(r"^# TYPE (\S+)", _exposition(), flags=re.MULTILINE)}
    queries = panel_queries()
    named = {_family(n) for _, expr in queries for n in re.findall(r"\bmlwarden_[a-z0-9_]+", expr)}
    assert named <= exposed, named - exposed
    efficacy = {"precision", "recall", "f1", "calibration_error", "ab_f1_difference"}
    assert {f"mlwarden_efficacy_{m}" for m in efficacy} <= named
    assert {"mlwarden_guard_alarms", "mlwarden_drift_alarms", "mlwarden_guard_errors"} <= named
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["targets"] and panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (CI installs it)")
def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    rules = [
        {"record": f"mlwarden_dashboard:panel_{i}", "expr": expr}
        for i, (_, expr) in enumerate(panel_queries())
    ]
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = subprocess.run(
        [str(PROMTOOL), "check", "rules", str(path)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"{len(rules)} rules found" in checked.stdout


def test_every_counter_an_alert_watches_with_increase_is_exported_from_zero() -> None:
    """A counter first seen at 1 has nothing to rise from: its first alarm would never fire."""
    exposition = _exposition()
    watched = re.findall(r"increase\((mlwarden_[a-z_]+)(\{[^}]*\})?\[", RULES.read_text())
    assert len(watched) >= 4
    for metric, selector in watched:
        labels = re.findall(r'(\w+)="([^"]*)"', selector)
        series = [
            line
            for line in exposition.splitlines()
            if line.startswith(metric) and all(f'{k}="{v}"' in line for k, v in labels)
        ]
        assert series and all(line.endswith(" 0.0") for line in series), (metric, selector)
