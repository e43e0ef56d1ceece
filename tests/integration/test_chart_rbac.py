"""The chart's RBAC: the rules rendered in both modes (cluster-wide, and `watchNamespaces`
with a Role per served namespace), and the namespaced mode's permissions as the real
apiserver's RBAC authorizer answers them (`kubectl auth can-i --as` the chart's service
accounts)."""

from __future__ import annotations

import ast
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Cluster
from tests.integration.test_chart import CHART, _helm, _run_helm

pytestmark = pytest.mark.integration

#: Every call the operator makes (edgeops/k8s/*, Kopf handlers in edgeops/controllers/*) in
#: a namespace it serves, as resource -> verbs: README.md "RBAC" explains each.
OPERATOR_NAMESPACED = {
    "edgeops.dev/datasets": {"get", "list", "watch", "patch"},
    "edgeops.dev/trainingruns": {"get", "list", "watch", "patch", "create"},
    "edgeops.dev/edgemodels": {"get", "list", "watch", "patch"},
    "edgeops.dev/fleetrollouts": {"get", "list", "watch", "patch", "create"},
    "edgeops.dev/devices": {"get", "list", "watch", "patch"},
    **{
        f"edgeops.dev/{kind}/status": {"patch"}
        for kind in ("datasets", "trainingruns", "edgemodels", "fleetrollouts", "devices")
    },
    "batch/jobs": {"get", "list", "watch", "create", "patch", "delete"},
    "/pods": {"list", "watch"},
    "/pods/log": {"get"},
    "/configmaps": {"get", "create", "patch"},
    "/secrets": {"get", "create", "patch"},
    "/serviceaccounts": {"get", "create", "patch"},
    "/events": {"create", "patch"},
    "serving.kserve.io/inferenceservices": {"get", "list", "watch", "create", "patch", "delete"},
    "serving.kserve.io/servingruntimes": {"get", "create", "patch"},
}
#: The gateway's calls in a namespace it serves (edgeops/gateway/*, edgeops/k8s/fleet.py).
GATEWAY_NAMESPACED = {
    "edgeops.dev/devices": {"get", "create", "patch"},
    "edgeops.dev/devices/status": {"patch"},
    "edgeops.dev/datasets": {"get"},
    "/secrets": {"get", "patch"},
}
CRDS_READ = {"apiextensions.k8s.io/customresourcedefinitions": {"get", "list", "watch"}}
WEBHOOKS = "validatingwebhookconfigurations.admissionregistration.k8s.io"
GATEWAY_CACHES = {
    f"edgeops.dev/{k}": {"list", "watch"} for k in ("devices", "edgemodels", "fleetrollouts")
}


#: The API calls of training, evaluation and dataset collection, as (scope, verb, resource,
#: object name or ""): ``tenant`` is the run's or Dataset's namespace, ``home`` the
#: operator's own. Server-side apply (``apply.server_side_apply``, ``apply.apply_owned``
#: after its read) is a PATCH that creates an absent object, so it needs create and patch.
FLOW_CALLS: dict[str, list[tuple[str, str, str, str]]] = {
    # controllers/trainingrun.py: _issue_credentials (pod_credentials.issue), _ensure_job,
    # start (objects.read_job), status; watches.py indexes the run's Jobs and pods.
    "training": [
        *[("tenant", v, "secrets", "r1-train-s3") for v in ("get", "create", "patch")],
        *[("tenant", v, "configmaps", "r1-train") for v in ("get", "create", "patch")],
        *[("tenant", v, "jobs.batch", "r1-train") for v in ("get", "create", "patch")],
        *[("tenant", v, "jobs.batch", "") for v in ("list", "watch")],
        *[("tenant", v, "pods", "") for v in ("list", "watch")],
        ("tenant", "patch", "trainingruns.edgeops.dev/status", "r1"),
        *[("tenant", v, "events", "") for v in ("create", "patch")],
    ],
    # trainingrun.py _ensure_evaluation_job and _read_evaluation / _evaluator_error: the
    # evaluator's Secret and Job in the operator's namespace, its pod's log; the store's
    # own credentials Secret (controllers/storage.py).
    "evaluation": [
        *[("home", v, "secrets", "edgeops-evaluator-s3") for v in ("get", "create", "patch")],
        ("home", "get", "secrets", "edgeops-s3"),
        *[("home", v, "jobs.batch", "edgeops-eval-0b5e") for v in ("get", "create", "patch")],
        *[("home", v, "jobs.batch", "") for v in ("list", "watch")],
        *[("home", v, "pods", "") for v in ("list", "watch")],
        ("home", "get", "pods/log", "edgeops-eval-0b5e-x7k2p"),
    ],
    # controllers/dataset_collection.py start (pod_credentials.issue, apply_owned), report
    # (the collector's log), remove (a succeeded Job); watches.py indexes Jobs and pods.
    "collection": [
        *[("tenant", v, "secrets", "ds-collect-s3") for v in ("get", "create", "patch")],
        *[("tenant", v, "jobs.batch", "ds-collect-1") for v in ("get", "create", "patch")],
        ("tenant", "delete", "jobs.batch", "ds-collect-1"),
        *[("tenant", v, "jobs.batch", "") for v in ("list", "watch")],
        *[("tenant", v, "pods", "") for v in ("list", "watch")],
        ("tenant", "get", "pods/log", "ds-collect-1-x7k2p"),
        ("tenant", "patch", "datasets.edgeops.dev/status", "ds"),
        *[("tenant", v, "events", "") for v in ("create", "patch")],
    ],
}
#: The edgeops.k8s helpers those flows call, and what each needs (FLOW_CALLS lists them per
#: object). A helper these modules start calling fails
#: test_training_evaluation_and_collection_calls_are_the_inventory until it is added here
#: and its calls to FLOW_CALLS.
FLOW_MODULES = ("trainingrun", "dataset_collection", "pod_credentials")
K8S_HELPERS = {
    "apply.apply_owned": "get, then server-side apply (create, patch)",
    "apply.read": "get",
    "apply.server_side_apply": "server-side apply (create, patch)",
    "objects.read_job": "get jobs",
    "objects.read_pod_log": "get pods/log",
    "objects.delete_job": "delete jobs",
    # Pure: build manifests, compare owners, read errors (no API call).
    "custom.check_owned": "",
    "custom.secret_manifest": "",
    "custom.NameTakenError": "",
}
CONTROLLERS = Path(__file__).resolve().parents[2] / "operator" / "edgeops" / "controllers"


def _rule_allows(rule: dict[str, Any], verb: str, resource: str, name: str) -> bool:
    """Whether one RBAC PolicyRule grants ``verb`` on ``resource`` (``plural[.group]``,
    ``/sub`` for a subresource) named ``name`` ("" for a collection), as the apiserver's
    RBAC authorizer decides (create, list and watch carry no name)."""
    base, _, sub = resource.partition("/")
    plural, _, group = base.partition(".")
    wanted = f"{plural}/{sub}" if sub else plural
    names = rule.get("resourceNames") or []
    return (
        (group in rule["apiGroups"] or "*" in rule["apiGroups"])
        and (wanted in rule["resources"] or "*" in rule["resources"])
        and (verb in rule["verbs"] or "*" in rule["verbs"])
        and (not names or (bool(name) and name in names and verb not in ("create", "list")))
    )


def _allowed(roles: list[dict[str, Any]], verb: str, resource: str, name: str) -> bool:
    return any(_rule_allows(r, verb, resource, name) for role in roles for r in role["rules"])


def _render(*sets: str) -> list[dict[str, Any]]:
    out = _run_helm("template", "eo", str(CHART), "--namespace", "eo-system", *sets)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def _verbs(role: dict[str, Any]) -> dict[str, set[str]]:
    """resource (group/plural[/sub], names after #) -> verbs, merged over the rules."""
    merged: dict[str, set[str]] = {}
    for rule in role["rules"]:
        names = ",".join(rule.get("resourceNames", []))
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                key = f"{group}/{resource}" + (f"#{names}" if names else "")
                merged.setdefault(key, set()).update(rule["verbs"])
    return merged


def _roles(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str | None, dict[str, Any]]:
    return {
        d["metadata"].get("namespace"): d
        for d in docs
        if d["kind"] == kind and d["metadata"]["name"] == name
    }


def _merge(*tables: dict[str, set[str]]) -> dict[str, set[str]]:
    merged: dict[str, set[str]] = {}
    for table in tables:
        for resource, verbs in table.items():
            merged.setdefault(resource, set()).update(verbs)
    return merged


def _home() -> dict[str, set[str]]:
    """The operator's Role in the release namespace (either mode)."""
    return {
        "/secrets": {"create"},
        "/configmaps": {"create"},
        "/secrets#edgeops-signing-key,edgeops-evaluator-s3": {"get", "patch"},
        "/secrets#edgeops-s3": {"get"},
        "/configmaps#edgeops-signing": {"get", "patch"},
        "batch/jobs": {"get", "list", "watch", "create", "patch"},
        "/pods": {"list", "watch"},
        "/pods/log": {"get"},
        "/events": {"create", "patch"},
    }


def _can(
    cluster: Cluster, user: str, verb: str, resource: str, namespace: str, *extra: str
) -> bool:
    """`kubectl auth can-i` as ``user``. ``resource`` is ``plural[.group]``, with ``/name``
    for one object or ``/status``, ``/log`` for a subresource."""
    base, _, rest = resource.partition("/")
    args = [base, f"--subresource={rest}"] if rest in ("status", "log") else [resource]
    result = cluster.kubectl(
        "auth", "can-i", verb, *args, "-n", namespace, *extra, "--as", user, check=False
    )  # fmt: skip
    return result.stdout.strip() == "yes"


def test_cluster_wide_rules_are_exactly_the_calls_made() -> None:
    docs = _render()
    cluster = _roles(docs, "ClusterRole", "eo-operator")[None]
    assert _verbs(cluster) == {**CRDS_READ, **OPERATOR_NAMESPACED}
    # The operator's own objects: names fixed by the values, in the release namespace only.
    own = _roles(docs, "Role", "eo-operator-own")
    assert list(own) == ["eo-system"] and _verbs(own["eo-system"]) == _home()
    gateway = _roles(docs, "ClusterRole", "eo-gateway")[None]
    assert _verbs(gateway) == _merge(GATEWAY_CACHES, GATEWAY_NAMESPACED)
    assert not _roles(docs, "Role", "eo-operator")
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    assert "args" not in deployment["spec"]["template"]["spec"]["containers"][0]


def test_namespaced_mode_has_a_role_per_namespace_and_a_minimal_cluster_role() -> None:
    docs = _render(
        "--set", "watchNamespaces={team-a,team-b}", "--set", "admission.port=9443",
        "--set", "peering=true",
    )  # fmt: skip
    cluster = _verbs(_roles(docs, "ClusterRole", "eo-operator")[None])
    assert cluster == {
        **CRDS_READ,
        "/namespaces": {"list", "watch"},
        "admissionregistration.k8s.io/validatingwebhookconfigurations": {"create"},
        "admissionregistration.k8s.io/validatingwebhookconfigurations#admission.edgeops.dev": {
            "get",
            "patch",
        },
    }
    peering = {"kopf.dev/kopfpeerings": {"get", "list", "watch", "patch"}}
    tenants = _roles(docs, "Role", "eo-operator")
    assert set(tenants) == {"team-a", "team-b"}
    assert all(_verbs(r) == {**OPERATOR_NAMESPACED, **peering} for r in tenants.values())
    bindings = _roles(docs, "RoleBinding", "eo-operator")
    assert set(bindings) == {"team-a", "team-b"}
    for binding in bindings.values():
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "eo-operator", "namespace": "eo-system"}
        ]
    # The release namespace: the operator's own objects, plus reading what Kopf watches there.
    own = _verbs(_roles(docs, "Role", "eo-operator-own")["eo-system"])
    watch_only = {f"edgeops.dev/{k}" for k in ("datasets", "trainingruns", "edgemodels")}
    assert _home().items() <= own.items() and all(own[k] == {"list", "watch"} for k in watch_only)
    assert own["kopf.dev/kopfpeerings"] == {"get", "list", "watch", "patch"}
    # The gateway: everything, its caches included, in the served namespaces only, which it
    # is told with --namespace (one namespaced list + watch per kind and namespace).
    assert not _roles(docs, "ClusterRole", "eo-gateway")
    assert not _roles(docs, "ClusterRoleBinding", "eo-gateway")
    gateway = _roles(docs, "Role", "eo-gateway")
    assert set(gateway) == {"team-a", "team-b"}
    assert all(_verbs(r) == _merge(GATEWAY_CACHES, GATEWAY_NAMESPACED) for r in gateway.values())
    gateway_pod = next(
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "eo-gateway"
    )["spec"]["template"]["spec"]
    assert gateway_pod["containers"][0]["args"] == ["--namespace=team-a", "--namespace=team-b"]
    deployment = next(
        d for d in docs if d["kind"] == "Deployment" and "operator" in d["metadata"]["name"]
    )
    assert deployment["spec"]["template"]["spec"]["containers"][0]["args"] == [
        "--namespace=team-a",
        "--namespace=team-b",
        "--namespace=eo-system",
        "--peering",
    ]
    # The older single value joins the list; helm lint --strict stays clean in this mode.
    docs = _render("--set", "watchNamespace=team-c", "--set", "watchNamespaces={team-a}")
    assert set(_roles(docs, "Role", "eo-operator")) == {"team-a", "team-c"}
    lint = _run_helm("lint", "--strict", str(CHART), "--set", "watchNamespaces={team-a,team-b}")
    assert lint.returncode == 0 and "[WARNING]" not in lint.stdout, lint.stdout + lint.stderr


def _helper_calls(module: str) -> set[str]:
    """``apply.x``, ``objects.x`` and ``custom.x`` calls in controllers/<module>.py."""
    tree = ast.parse((CONTROLLERS / f"{module}.py").read_text())
    return {
        f"{node.func.value.id}.{node.func.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id in ("apply", "objects", "custom", "k8s")
    }


def test_training_evaluation_and_collection_calls_are_the_inventory() -> None:
    """Every edgeops.k8s helper the three flows call is in the inventory, and the chart
    grants every call of FLOW_CALLS in both modes: cluster-wide (ClusterRole, plus the
    release namespace's Role at home) and per namespace (the served namespace's Role; at
    home the release namespace's Role and the ClusterRole)."""
    called = set().union(*(_helper_calls(m) for m in FLOW_MODULES))
    assert called <= set(K8S_HELPERS), sorted(called - set(K8S_HELPERS))
    wide = _render()
    narrow = _render("--set", "watchNamespaces={team-a}")
    modes = {
        "cluster-wide": {
            "tenant": [_roles(wide, "ClusterRole", "eo-operator")[None]],
            "home": [
                _roles(wide, "ClusterRole", "eo-operator")[None],
                _roles(wide, "Role", "eo-operator-own")["eo-system"],
            ],
        },
        "watchNamespaces": {
            "tenant": [_roles(narrow, "Role", "eo-operator")["team-a"]],
            "home": [
                _roles(narrow, "ClusterRole", "eo-operator")[None],
                _roles(narrow, "Role", "eo-operator-own")["eo-system"],
            ],
        },
    }
    missing = [
        (mode, flow, call)
        for mode, scopes in modes.items()
        for flow, calls in FLOW_CALLS.items()
        for call in calls
        if not _allowed(scopes[call[0]], *call[1:])
    ]
    assert missing == [], missing
    # The matcher refuses what the chart does not grant (so the check above can fail).
    home = modes["watchNamespaces"]["home"]
    assert not _allowed(home, "patch", "secrets", "someone-elses")
    assert not _allowed(home, "delete", "jobs.batch", "edgeops-eval-0b5e")
    assert not _allowed(modes["watchNamespaces"]["tenant"], "list", "secrets", "")


def test_namespaced_service_accounts_are_confined_to_their_namespaces(cluster: Cluster) -> None:
    """Installed with watchNamespaces on the real apiserver (RBAC authorizer): the operator
    and gateway can do their work in the listed namespaces and their own, and nothing in
    kube-system or in a tenant's namespace that is not listed."""
    own, team_a, team_b, other = (cluster.namespace(p) for p in ("own", "ta", "tb", "other"))
    # replicas=0: only RBAC is under test here (test_chart runs the chart's pods).
    _helm(
        cluster,
        "install", "eons", str(CHART), "--namespace", own, "--wait=false",
        "--set", "crds.install=false", "--set", "replicas=0", "--set", "gateway.replicas=0",
        "--set", f"watchNamespaces={{{team_a},{team_b}}}",
    )  # fmt: skip
    try:

        def can(account: str, verb: str, resource: str, namespace: str, *extra: str) -> bool:
            user = f"system:serviceaccount:{own}:eons-{account}"
            return _can(cluster, user, verb, resource, namespace, *extra)

        checks: list[tuple[bool, str, str, str, str, tuple[str, ...]]] = []
        for ns in (team_a, team_b):
            checks += [
                (True, "operator", verb, resource, ns, ())
                for verb, resource in [
                    ("get", "secrets"), ("create", "secrets"), ("patch", "secrets"),
                    ("create", "jobs.batch"), ("watch", "jobs.batch"), ("list", "pods"),
                    ("delete", "jobs.batch"), ("get", "pods/log"),
                    ("create", "configmaps"), ("create", "serviceaccounts"),
                    ("watch", "datasets.edgeops.dev"), ("patch", "trainingruns.edgeops.dev/status"),
                    ("create", "fleetrollouts.edgeops.dev"), ("create", "events"),
                    ("delete", "inferenceservices.serving.kserve.io"),
                ]
            ]  # fmt: skip
            checks += [
                (False, "operator", verb, resource, ns, ())
                for verb, resource in [
                    ("list", "secrets"), ("delete", "secrets"), ("delete", "configmaps"),
                    ("create", "pods"), ("update", "datasets.edgeops.dev"),
                    ("delete", "trainingruns.edgeops.dev"),
                    ("update", "trainingruns.edgeops.dev/status"),
                ]
            ]  # fmt: skip
            checks += [
                (True, "gateway", "get", "secrets", ns, ()),
                (True, "gateway", "patch", "secrets", ns, ()),
                (True, "gateway", "create", "devices.edgeops.dev", ns, ()),
                (True, "gateway", "patch", "devices.edgeops.dev/status", ns, ()),
                (True, "gateway", "watch", "devices.edgeops.dev", ns, ()),
                (True, "gateway", "list", "fleetrollouts.edgeops.dev", ns, ()),
                (False, "gateway", "list", "secrets", ns, ()),
                (False, "gateway", "create", "secrets", ns, ()),
                (False, "gateway", "patch", "edgemodels.edgeops.dev/status", ns, ()),
            ]
        for ns in (other, "kube-system", "default"):
            checks += [
                (False, "operator", verb, resource, ns, ())
                for verb, resource in [
                    ("get", "secrets"), ("create", "secrets"), ("patch", "secrets"),
                    ("create", "jobs.batch"), ("create", "configmaps"),
                    ("patch", "serviceaccounts"), ("list", "datasets.edgeops.dev"),
                    ("patch", "edgemodels.edgeops.dev/status"), ("create", "events"),
                ]
            ]  # fmt: skip
            checks += [
                (False, "gateway", "get", "secrets", ns, ()),
                (False, "gateway", "create", "devices.edgeops.dev", ns, ()),
                (False, "gateway", "patch", "devices.edgeops.dev/status", ns, ()),
                (False, "gateway", "list", "devices.edgeops.dev", ns, ()),
            ]
        # Its own namespace: the named objects, evaluation Jobs and their log.
        checks += [
            (True, "operator", "get", "secrets/edgeops-signing-key", own, ()),
            (True, "operator", "patch", "secrets/edgeops-evaluator-s3", own, ()),
            (True, "operator", "get", "secrets/edgeops-s3", own, ()),
            (False, "operator", "patch", "secrets/edgeops-s3", own, ()),
            (False, "operator", "get", "secrets/someone-elses", own, ()),
            (False, "operator", "list", "secrets", own, ()),
            (True, "operator", "create", "secrets", own, ()),
            (True, "operator", "patch", "configmaps/edgeops-signing", own, ()),
            (False, "operator", "patch", "configmaps/another", own, ()),
            (True, "operator", "create", "jobs.batch", own, ()),
            (True, "operator", "get", "pods/log", own, ()),
            (True, "operator", "watch", "edgemodels.edgeops.dev", own, ()),
            (False, "operator", "patch", "edgemodels.edgeops.dev", own, ()),
            (False, "gateway", "get", "secrets", own, ()),
            # Cluster-wide: reading CRDs and listing namespaces (operator) only.
            (True, "operator", "list", "customresourcedefinitions.apiextensions.k8s.io", own, ()),
            (False, "operator", "list", "jobs.batch", own, ("--all-namespaces",)),
            (True, "operator", "list", "namespaces", own, ()),
            (False, "operator", "get", "namespaces", own, ()),
            (False, "operator", "create", "namespaces", own, ()),
            (False, "operator", "create", WEBHOOKS, own, ()),
            (False, "gateway", "watch", "devices.edgeops.dev", own, ("--all-namespaces",)),
            (False, "gateway", "get", "secrets", own, ("--all-namespaces",)),
        ]  # fmt: skip
        # The calls of training, evaluation and collection (FLOW_CALLS), on the real
        # authorizer: tenant calls in a listed namespace (its Role names no objects, so
        # names are dropped), home calls in the operator's own, each once.
        for calls in FLOW_CALLS.values():
            for scope, verb, resource, name in calls:
                named = scope == "home" and name and "/" not in resource
                ns = team_a if scope == "tenant" else own
                check = (
                    True,
                    "operator",
                    verb,
                    f"{resource}/{name}" if named else resource,
                    ns,
                    (),
                )
                if check not in checks:
                    checks.append(check)
        # A few kubectl processes at a time: each answer is one SubjectAccessReview.
        with ThreadPoolExecutor(max_workers=4) as pool:
            answers = list(pool.map(lambda c: can(*c[1:5], *c[5]), checks))
        wrong = [c for c, answer in zip(checks, answers, strict=True) if answer != c[0]]
        assert wrong == [], f"{len(wrong)} of {len(checks)} answers differ: {wrong}"
    finally:
        _helm(cluster, "uninstall", "eons", "--namespace", own)
