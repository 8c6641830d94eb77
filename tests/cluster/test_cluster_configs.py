"""The cluster configurations are valid and agree with the code they run.

* ``cluster/aws.yaml`` goes through Ray's own launcher validation (the steps of ``ray up``
  before it talks to AWS: defaults filled in, JSON schema, node-type checks).
* The KubeRay manifests carry what the CRDs require, use one image and one Ray version,
  take S3 credentials from Secrets only, and keep GPU groups at zero when idle.
* Every command line that names ``jobs/<stage>.py`` - in manifests, the launcher config,
  the job modules' docstrings and docs/cluster.md - names a real file and a real
  ``specray`` subcommand, and parses with the CLI's own parser; ``--set`` overrides load
  as settings; a job on a cluster with GPUs asks for them (``train.use_gpu=true``) and
  fits in them.
"""

from __future__ import annotations

import ast
import copy
import re
import runpy
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray
import yaml

from specray.cli import build_parser
from specray.config import load_config

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"
KUBERAY = CLUSTER / "kuberay"
JOBS = REPO / "jobs"
DOCS = REPO / "docs" / "cluster.md"
STAGES = ["demo", "synth", "ingest", "train", "tune", "analyze", "retrain"]
TRAINING_STAGES = {"train", "tune", "retrain"}
RAY_KINDS = {"RayCluster", "RayJob", "RayCronJob"}
GPU = "nvidia.com/gpu"
PYTHON_TAG = f"py{sys.version_info.major}{sys.version_info.minor}"
ENTRYPOINT = re.compile(r"python (jobs/[\w-]+\.py)((?:[ \t]+[^\s`|;&#][^\s`|;&]*)*)")


def _cli_commands() -> dict[str, object]:
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command")
    return dict(commands.choices)


CLI_COMMANDS = _cli_commands()


# ---------------------------------------------------------------- loading the manifests


def _load(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _manifests() -> Iterator[tuple[str, dict]]:
    """Every Kubernetes object, with RayJobs embedded in ConfigMaps unpacked as well."""
    for path in sorted(KUBERAY.glob("*.yaml")):
        for doc in _load(path):
            yield path.name, doc
            if doc.get("kind") == "ConfigMap":
                for key, text in (doc.get("data") or {}).items():
                    for inner in yaml.safe_load_all(text):
                        if isinstance(inner, dict) and inner.get("kind") in RAY_KINDS:
                            yield f"{path.name}:{doc['metadata']['name']}/{key}", inner


MANIFESTS = list(_manifests())


def _job_specs() -> list[tuple[str, dict]]:
    """(where, RayJob spec) for every RayJob and RayCronJob template."""
    found = []
    for where, doc in MANIFESTS:
        if doc["kind"] == "RayJob":
            found.append((f"{where}:RayJob", doc["spec"]))
        elif doc["kind"] == "RayCronJob":
            found.append((f"{where}:RayCronJob", doc["spec"]["jobTemplate"]))
    return found


def _cluster_specs() -> list[tuple[str, dict]]:
    """(where, RayCluster spec) for every RayCluster, standalone or inside a job."""
    found = [(f"{w}:RayCluster", d["spec"]) for w, d in MANIFESTS if d["kind"] == "RayCluster"]
    found += [(w, s["rayClusterSpec"]) for w, s in _job_specs() if "rayClusterSpec" in s]
    return found


JOB_SPECS = _job_specs()
CLUSTER_SPECS = _cluster_specs()


def _pod_specs(cluster: dict) -> Iterator[dict]:
    yield cluster["headGroupSpec"]["template"]["spec"]
    for group in cluster.get("workerGroupSpecs", []):
        yield group["template"]["spec"]


def _quantity(value) -> float:
    text = str(value)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def _gpus(group: dict) -> int:
    limits = group["template"]["spec"]["containers"][0].get("resources", {}).get("limits", {})
    return int(limits.get(GPU, 0))


def _cpus(group: dict) -> float:
    limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
    return _quantity(limits["cpu"])


# ---------------------------------------------------------------- command lines


def _commands_in(text: str) -> list[tuple[str, list[str]]]:
    """(script, arguments) for each `python jobs/<x>.py ...` in text (continuations joined)."""
    joined = re.sub(r"\\\n\s*#?\s*", " ", text)  # continued lines, also inside comments
    return [(m.group(1), shlex.split(m.group(2))) for m in ENTRYPOINT.finditer(joined)]


def _parse(script: str, args: list[str], where: str):
    """Parse a job command line with the CLI's parser; the namespace, or skip if unknown."""
    assert (REPO / script).is_file(), f"{where}: {script} does not exist"
    stage = Path(script).stem
    assert stage in STAGES, f"{where}: {script} is not a specray stage"
    if stage not in CLI_COMMANDS:
        pytest.skip(f"`specray {stage}` is not in the CLI yet ({where})")
    try:
        return build_parser().parse_args([stage, *args])
    except SystemExit as exc:  # argparse reports the error on stderr
        if exc.code == 0:  # `--help`
            return None
        pytest.fail(f"{where}: `specray {stage} {shlex.join(args)}` does not parse ({exc})")


def _settings(namespace):
    """The Config a job's --set overrides produce (they must all be known settings)."""
    return load_config(None, getattr(namespace, "set", None) or [])


# ---------------------------------------------------------------- jobs/


@pytest.mark.parametrize("stage", STAGES)
def test_job_entrypoint_is_a_thin_wrapper(stage):
    path = JOBS / f"{stage}.py"
    assert path.is_file(), f"jobs/{stage}.py is missing"
    tree = ast.parse(path.read_text())
    docstring = ast.get_docstring(tree) or ""
    assert "ray job submit" in docstring and f"jobs/{stage}.py" in docstring
    body = [node for node in tree.body if not isinstance(node, ast.Expr)]
    imports = [node for node in body if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert {ast.unparse(node) for node in imports} == {"import sys", "from specray.cli import main"}
    (guard,) = [node for node in body if not isinstance(node, (ast.Import, ast.ImportFrom))]
    assert ast.unparse(guard) == (
        f"if __name__ == '__main__':\n    sys.exit(main(['{stage}', *sys.argv[1:]]))"
    )


def test_jobs_folder_holds_only_stages():
    assert sorted(p.stem for p in JOBS.glob("*.py")) == sorted(STAGES)


@pytest.mark.parametrize("stage", STAGES)
def test_job_runs_the_cli_stage(stage, monkeypatch, capsys):
    """`python jobs/<stage>.py --help` is `specray <stage> --help`."""
    if stage not in CLI_COMMANDS:
        pytest.skip(f"`specray {stage}` is not in the CLI yet")
    monkeypatch.setattr(sys, "argv", [f"jobs/{stage}.py", "--help"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(JOBS / f"{stage}.py"), run_name="__main__")
    assert exit_info.value.code == 0
    assert f"usage: specray {stage}" in capsys.readouterr().out


def _documented_commands() -> list[tuple[str, str, list[str]]]:
    sources = [*sorted(JOBS.glob("*.py")), CLUSTER / "aws.yaml", DOCS]
    found = []
    for path in sources:
        if path.exists():
            for script, args in _commands_in(path.read_text()):
                if "..." not in args:  # elided in prose
                    found.append((str(path.relative_to(REPO)), script, args))
    return found


DOCUMENTED = _documented_commands()


def test_documented_commands_found():
    """Every stage has at least one example command (in its own docstring)."""
    assert {Path(script).stem for _, script, _ in DOCUMENTED} >= set(STAGES)


@pytest.mark.parametrize(
    ("where", "script", "args"), DOCUMENTED, ids=[f"{w}:{s}" for w, s, _ in DOCUMENTED]
)
def test_documented_command_parses(where, script, args):
    namespace = _parse(script, args, where)
    if namespace is None:
        return
    config = _settings(namespace)
    if "use_gpu=true" in " ".join(args):
        assert config.train.use_gpu is True


# ---------------------------------------------------------------- cluster/aws.yaml


@pytest.fixture(scope="module")
def aws() -> dict:
    return yaml.safe_load((CLUSTER / "aws.yaml").read_text())


def test_aws_config_passes_ray_validation(aws, monkeypatch):
    """What `ray up` does before contacting AWS: fill defaults, then Ray's validation."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    def no_aws(*args, **kwargs):
        raise AssertionError("validation must not contact AWS")

    for name in ("client", "resource", "Session"):
        monkeypatch.setattr(f"boto3.{name}", no_aws, raising=False)
    prepared = prepare_config(copy.deepcopy(aws))
    validate_config(prepared)
    assert prepared["provider"]["type"] == "aws"
    assert prepared["available_node_types"][prepared["head_node_type"]]["max_workers"] == 0


def test_aws_node_types(aws):
    types = aws["available_node_types"]
    head = types[aws["head_node_type"]]
    assert "InstanceMarketOptions" not in head["node_config"], "the head must not be spot"
    workers = {name: t for name, t in types.items() if name != aws["head_node_type"]}
    gpu = [t for t in workers.values() if t["resources"].get("GPU", 0) > 0]
    cpu = [t for t in workers.values() if t["resources"].get("GPU", 0) == 0]
    assert gpu and cpu, "a GPU group for training and a CPU group for ingest/analysis"
    for node_type in workers.values():
        assert node_type.get("min_workers", 0) == 0, "workers scale from zero"
        assert node_type["max_workers"] >= 1
        assert node_type["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot"
        assert node_type["resources"]["CPU"] > 0


def test_aws_software_matches_this_ray(aws):
    image = aws["docker"]["image"]
    assert image == f"rayproject/ray:{ray.__version__}-{PYTHON_TAG}-gpu"
    setup = " ".join(aws["setup_commands"])
    assert f"ray[default,data,train,tune]=={ray.__version__}" in setup
    assert "specray" in setup, "setup_commands install the project"
    for local in aws["file_mounts"].values():
        assert Path(local).expanduser().resolve() != REPO, "mounting the checkout ships .venv"
    assert any("auth_token" in remote for remote in aws["file_mounts"])
    for command in aws["head_start_ray_commands"] + aws["worker_start_ray_commands"]:
        if "ray start" in command:
            assert "RAY_AUTH_MODE=token" in command


def _gpus_asked(stage: str, config) -> int:
    """GPUs a GPU job holds at once: its Train workers, times the concurrent Tune trials."""
    trials = (config.tune.max_concurrent or 1) if stage == "tune" else 1
    return config.train.workers * trials


def test_aws_jobs_fit_the_gpu_group(aws):
    """The documented GPU jobs fit in the GPU node type at its maximum size."""
    gpu_slots = sum(
        t.get("max_workers", 0) * t["resources"].get("GPU", 0)
        for t in aws["available_node_types"].values()
    )
    for where, script, args in DOCUMENTED:
        stage = Path(script).stem
        if stage in CLI_COMMANDS and "use_gpu=true" in " ".join(args):
            config = _settings(build_parser().parse_args([stage, *args]))
            assert _gpus_asked(stage, config) <= gpu_slots, f"{where}: {args}"


# ---------------------------------------------------------------- KubeRay manifests


def test_kuberay_files_present():
    kinds = {(where.split(":")[0], doc["kind"]) for where, doc in MANIFESTS}
    assert ("raycluster.yaml", "RayCluster") in kinds
    assert ("rayjob-train.yaml", "RayJob") in kinds
    assert ("raycronjob-retrain.yaml", "RayCronJob") in kinds
    assert ("cronjob-retrain.yaml", "CronJob") in kinds
    assert ("cronjob-retrain.yaml", "RayJob") in kinds  # the one the CronJob creates


@pytest.mark.parametrize(("where", "doc"), MANIFESTS, ids=[w for w, _ in MANIFESTS])
def test_manifest_header(where, doc):
    assert doc.get("apiVersion") and doc.get("kind")
    metadata = doc.get("metadata") or {}
    assert metadata.get("name") or metadata.get("generateName"), where
    if doc["kind"] in RAY_KINDS:
        assert doc["apiVersion"] == "ray.io/v1"


@pytest.mark.parametrize(("where", "spec"), CLUSTER_SPECS, ids=[w for w, _ in CLUSTER_SPECS])
def test_ray_cluster_spec(where, spec):
    assert spec["rayVersion"] == ray.__version__
    assert spec.get("enableInTreeAutoscaling") is True
    assert spec.get("authOptions", {}).get("mode") == "token", "keep token auth on"
    head = spec["headGroupSpec"]
    assert isinstance(head["rayStartParams"], dict)
    assert head["template"]["spec"]["containers"][0].get("name")
    groups = spec.get("workerGroupSpecs", [])
    assert groups, f"{where}: no worker groups"
    assert len({g["groupName"] for g in groups}) == len(groups)
    for group in groups:
        assert isinstance(group["rayStartParams"], dict)
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        assert group["maxReplicas"] >= 1
        container = group["template"]["spec"]["containers"][0]
        assert container.get("name") and container.get("image")
        if _gpus(group):
            assert group["minReplicas"] == 0, f"{where}: idle GPU pods cost money"
            requests = container["resources"].get("requests", {})
            assert int(requests.get(GPU, _gpus(group))) == _gpus(group)
    assert any(_gpus(g) for g in groups), f"{where}: no GPU group"


@pytest.mark.parametrize(("where", "spec"), CLUSTER_SPECS, ids=[w for w, _ in CLUSTER_SPECS])
def test_credentials_come_from_secrets(where, spec):
    for pod in _pod_specs(spec):
        for container in pod["containers"]:
            for env in container.get("env", []):
                if re.search(r"KEY|SECRET|TOKEN|PASSWORD", env["name"]):
                    assert "value" not in env, f"{where}: literal {env['name']}"
                    assert env["valueFrom"]["secretKeyRef"]["name"]


def test_no_literal_credentials_anywhere():
    for path in CLUSTER.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert not re.search(r"AKIA[0-9A-Z]{16}", text), path
            assert not re.search(r"(?i)aws_secret_access_key\s*[:=]\s*['\"]?\w{20,}", text), path


def test_one_image_everywhere():
    images = {
        container["image"]
        for _, spec in CLUSTER_SPECS
        for pod in _pod_specs(spec)
        for container in pod["containers"]
    }
    assert len(images) == 1, images
    dockerfile = (CLUSTER / "Dockerfile").read_text()
    base = re.search(r"^FROM\s+(\S+)", dockerfile, re.MULTILINE).group(1)
    assert base == yaml.safe_load((CLUSTER / "aws.yaml").read_text())["docker"]["image"]
    assert "jobs" in dockerfile and "pip install" in dockerfile


@pytest.mark.parametrize(("where", "spec"), JOB_SPECS, ids=[w for w, _ in JOB_SPECS])
def test_job_spec(where, spec):
    assert ("rayClusterSpec" in spec) != ("clusterSelector" in spec), where
    if "rayClusterSpec" in spec:
        assert spec.get("shutdownAfterJobFinishes") is True
    assert isinstance(yaml.safe_load(spec["runtimeEnvYAML"]), dict)
    ((script, args),) = _commands_in(spec["entrypoint"])
    assert spec["entrypoint"].strip().startswith(f"python {script}")
    namespace = _parse(script, args, where)
    stage = Path(script).stem
    if stage not in TRAINING_STAGES or not hasattr(namespace, "set"):
        return
    groups = spec.get("rayClusterSpec", {}).get("workerGroupSpecs", [])
    gpu_groups = [g for g in groups if _gpus(g)]
    config = _settings(namespace)
    assert config.train.use_gpu == bool(gpu_groups), (
        f"{where}: the cluster has GPU groups, so --set train.use_gpu=true (and vice versa)"
    )
    if config.train.use_gpu:
        slots = sum(g["maxReplicas"] * _gpus(g) for g in gpu_groups)
        assert _gpus_asked(stage, config) <= slots, f"{where}: more GPUs than the cluster has"
        assert config.train.cpus_per_worker <= max(_cpus(g) for g in gpu_groups)


def _cron_ok(schedule: str) -> bool:
    fields = schedule.split()
    return len(fields) == 5 and all(re.fullmatch(r"[\d*/,\-]+", f) for f in fields)


def test_scheduled_retraining_routes_agree():
    """The RayCronJob and the plain CronJob run the same job on the same schedule."""
    cron_ray = next(d for _, d in MANIFESTS if d["kind"] == "RayCronJob")
    cron_k8s = next(d for _, d in MANIFESTS if d["kind"] == "CronJob")
    assert _cron_ok(cron_ray["spec"]["schedule"])
    assert cron_ray["spec"]["schedule"] == cron_k8s["spec"]["schedule"]
    created = next(
        d for w, d in MANIFESTS if d["kind"] == "RayJob" and w.startswith("cronjob-retrain")
    )
    assert created["spec"]["entrypoint"] == cron_ray["spec"]["jobTemplate"]["entrypoint"]
    assert Path(_commands_in(created["spec"]["entrypoint"])[0][0]).stem == "retrain"


def test_cronjob_may_create_rayjobs():
    docs = {d["kind"]: d for w, d in MANIFESTS if w == "cronjob-retrain.yaml"}
    pod = docs["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    account = docs["ServiceAccount"]["metadata"]["name"]
    assert pod["serviceAccountName"] == account
    binding = docs["RoleBinding"]
    assert {"kind": "ServiceAccount", "name": account} in [
        {k: s[k] for k in ("kind", "name")} for s in binding["subjects"]
    ]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": docs["Role"]["metadata"]["name"],
    }
    assert any(
        "ray.io" in rule["apiGroups"]
        and "rayjobs" in rule["resources"]
        and "create" in rule["verbs"]
        for rule in docs["Role"]["rules"]
    )
    # The pod creates the RayJob from the ConfigMap it mounts.
    (container,) = pod["containers"]
    mount = next(v for v in pod["volumes"] if "configMap" in v)
    assert mount["configMap"]["name"] == docs["ConfigMap"]["metadata"]["name"]
    path = next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == mount["name"])
    (key,) = docs["ConfigMap"]["data"]
    command = container.get("command", []) + container.get("args", [])
    assert command[:2] == ["kubectl", "create"] and f"{path}/{key}" in command
