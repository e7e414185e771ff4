"""A fork that adds a platform component (following CONTRIBUTING.md) still passes the suite."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, git, schema_dirs

CERT_MANAGER_VALUES = """\
crds:
  enabled: true
imageRegistry: quay.io
image:
  tag: v1.21.1
resources:
  requests: {cpu: 20m, memory: 64Mi}
  limits: {cpu: 200m, memory: 256Mi}
webhook:
  image:
    tag: v1.21.1
  resources:
    requests: {cpu: 10m, memory: 32Mi}
    limits: {cpu: 100m, memory: 128Mi}
cainjector:
  image:
    tag: v1.21.1
  resources:
    requests: {cpu: 10m, memory: 64Mi}
    limits: {cpu: 100m, memory: 256Mi}
startupapicheck:
  image:
    tag: v1.21.1
  resources:
    requests: {cpu: 10m, memory: 32Mi}
    limits: {cpu: 100m, memory: 64Mi}
acmesolver:
  image:
    tag: v1.21.1
"""


def add_cert_manager(fork: Path) -> None:
    """CONTRIBUTING.md > Add a platform component, done for cert-manager on workload clusters."""
    catalog = fork / "includes" / "catalog.jinja"
    text = catalog.read_text()
    text = text.replace("  'kubevela': 'https://kubevela.github.io/charts',\n",
                        "  'kubevela': 'https://kubevela.github.io/charts',\n  'jetstack': 'https://charts.jetstack.io',\n")
    text = text.replace("\n} %}\n{#-\n  The custom resources no chart carries", """
  'cert-manager': {
    'repository': 'jetstack', 'chart': 'cert-manager', 'version': 'v1.21.1',
    'namespace': 'cert-manager', 'wave': -12, 'needs': [], 'psa': 'restricted',
  },
} %}
{#-
  The custom resources no chart carries""")
    assert "'cert-manager': {" in text
    catalog.write_text(text)
    component = fork / "template" / "infrastructure" / "controllers" / "cert-manager"
    (component / "manifests").mkdir(parents=True)
    openkruise = fork / "template" / "infrastructure" / "controllers" / "openkruise"
    (component / "kustomization.yaml.jinja").write_text(
        (openkruise / "kustomization.yaml.jinja").read_text().replace("OpenKruise: advanced workloads (CloneSet is the "
                                                                      "workload of the company's services).",
                                                                      "cert-manager: certificates for the mesh's ingress."))
    (component / "{{ 'repository.yaml' if gitops == 'flux' else '' }}.jinja").write_text(
        "{% from 'includes/delivery.jinja' import helm_repository_objects with context %}\n"
        "{{ helm_repository_objects(['cert-manager']) | trim }}\n")
    (component / "manifests" / "kustomization.yaml").write_text((openkruise / "manifests" / "kustomization.yaml").read_text())
    (component / "manifests" / "namespace.yaml.jinja").write_text(
        "{% from 'includes/catalog.jinja' import releases %}\n"
        "{% from 'includes/k8s.jinja' import namespace_object, network_policies with context %}\n"
        "{{ namespace_object('cert-manager', releases['cert-manager'].psa) | trim }}\n"
        "{{ network_policies('cert-manager', ports=[10250]) | trim }}\n")
    (component / "release.yaml.jinja").write_text(
        "{% from 'includes/delivery.jinja' import helm_release with context %}\n"
        "{% call helm_release('cert-manager', manifests='infrastructure/controllers/cert-manager/manifests') %}\n"
        + CERT_MANAGER_VALUES + "{% endcall %}\n")
    cluster = fork / "includes" / "cluster.jinja"
    text = cluster.read_text()
    text, count = re.subn(r"\{% do dirs.extend\(\['klusterlet', 'openkruise', ",
                          "{% do dirs.extend(['klusterlet', 'cert-manager', 'openkruise', ", text)
    assert count == 1
    cluster.write_text(text)


@pytest.mark.slow
def test_fork_adding_a_component_passes_the_render_matrix(tmp_path: Path, charts):
    fork = tmp_path / "fork"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(fork)], check=True)
    for part in ("copier.yml", "template", "includes", "hooks", "src", "tests", "scripts"):  # the code under test
        subprocess.run(["rm", "-rf", str(fork / part)], check=True)
        subprocess.run(["cp", "-r", str(ROOT / part), str(fork / part)], check=True)
    add_cert_manager(fork)
    # the fork's data derived from renders, regenerated as CONTRIBUTING says
    env = {**os.environ, "OPC_SCHEMA_DIR": os.pathsep.join(map(str, schema_dirs())), "PYTHONPATH": str(fork / "src"),
           "OPC_CHART_DIR": os.pathsep.join(map(str, charts.dirs))}
    derive = [arg for k, v in charts.substitutes.items() for arg in ("--chart-substitute", f"{k}={v}")]
    for script in ("image-paths", "reserved-names"):
        done = subprocess.run([sys.executable, str(fork / "scripts" / script), *derive], cwd=fork, env=env,
                              capture_output=True, text=True, timeout=1200)
        assert done.returncode == 0, done.stderr[-3000:]
    assert "cert-manager" in (fork / "hooks" / "image-paths.yml").read_text()
    git(fork, "add", "-A")
    git(fork, "commit", "-q", "-m", "fork: add cert-manager")
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
                             "tests/test_render.py", "-k", "valid_fixture_renders or jinja or byte_identical"],
                            cwd=fork, env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:]
    assert " passed" in result.stdout
    rendered = list(fork.glob("**/cert-manager/release.yaml"))
    assert rendered == []  # renders go to temporary directories, not into the fork
