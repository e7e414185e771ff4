"""A fork that adds a platform component (following CONTRIBUTING.md) still passes the render
tests on every cloud and both engines."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, git, schema_dirs

BROADEST = ("all-clouds-flux", "all-clouds-argocd")  # every cloud, each engine
COMPONENT = "external-secrets"  # a chart the template does not carry, with its source offline
VALUES = """\
image:
  repository: ghcr.io/external-secrets/external-secrets
resources:
  requests: {cpu: 20m, memory: 64Mi}
  limits: {cpu: 200m, memory: 256Mi}
webhook:
  image:
    repository: ghcr.io/external-secrets/external-secrets
  resources:
    requests: {cpu: 10m, memory: 32Mi}
    limits: {cpu: 100m, memory: 128Mi}
certController:
  image:
    repository: ghcr.io/external-secrets/external-secrets
  resources:
    requests: {cpu: 10m, memory: 32Mi}
    limits: {cpu: 100m, memory: 128Mi}
"""


def add_component(fork: Path) -> None:
    """CONTRIBUTING.md > Add a platform component, done for External Secrets on workload clusters."""
    catalog = fork / "includes" / "catalog.jinja"
    text = catalog.read_text()
    text = text.replace("  'kubevela': 'https://kubevela.github.io/charts',\n",
                        "  'kubevela': 'https://kubevela.github.io/charts',\n"
                        "  'external-secrets': 'https://charts.external-secrets.io',\n")
    text = text.replace("\n} %}\n{#-\n  The custom resources no chart carries", """
  'external-secrets': {
    'repository': 'external-secrets', 'chart': 'external-secrets', 'version': '2.9.0',
    'namespace': 'external-secrets', 'wave': -12, 'needs': [], 'psa': 'restricted',
  },
} %}
{#-
  The custom resources no chart carries""")
    assert "'external-secrets': {" in text
    catalog.write_text(text)
    component = fork / "template" / "infrastructure" / "controllers" / COMPONENT
    (component / "manifests").mkdir(parents=True)
    openkruise = fork / "template" / "infrastructure" / "controllers" / "openkruise"
    (component / "kustomization.yaml.jinja").write_text(
        (openkruise / "kustomization.yaml.jinja").read_text().replace("OpenKruise: advanced workloads (CloneSet is the "
                                                                      "workload of the company's services).",
                                                                      "External Secrets: secrets from a store."))
    (component / "{{ 'repository.yaml' if gitops == 'flux' else '' }}.jinja").write_text(
        "{% from 'includes/delivery.jinja' import helm_repository_objects with context %}\n"
        f"{{{{ helm_repository_objects(['{COMPONENT}']) | trim }}}}\n")
    (component / "manifests" / "kustomization.yaml").write_text((openkruise / "manifests" / "kustomization.yaml").read_text())
    (component / "manifests" / "namespace.yaml.jinja").write_text(
        "{% from 'includes/catalog.jinja' import releases %}\n"
        "{% from 'includes/k8s.jinja' import namespace_object, network_policies, api_server with context %}\n"
        f"{{{{ namespace_object('{COMPONENT}', releases['{COMPONENT}'].psa) | trim }}}}\n"
        f"{{{{ network_policies('{COMPONENT}', ports=[10250], egress=[api_server]) | trim }}}}\n")
    (component / "release.yaml.jinja").write_text(
        "{% from 'includes/delivery.jinja' import helm_release with context %}\n"
        f"{{% call helm_release('{COMPONENT}', manifests='infrastructure/controllers/{COMPONENT}/manifests') %}}\n"
        + VALUES + "{% endcall %}\n")
    cluster = fork / "includes" / "cluster.jinja"
    text = cluster.read_text()
    text, count = re.subn(r"\{% do dirs.extend\(\['klusterlet', 'openkruise', ",
                          f"{{% do dirs.extend(['klusterlet', '{COMPONENT}', 'openkruise', ", text)
    assert count == 1
    cluster.write_text(text)


@pytest.mark.slow
def test_fork_adding_a_component_passes_the_render_matrix(tmp_path: Path, charts):
    fork = tmp_path / "fork"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(fork)], check=True)
    for part in ("copier.yml", "template", "includes", "hooks", "src", "tests", "scripts"):  # the code under test
        subprocess.run(["rm", "-rf", str(fork / part)], check=True)
        subprocess.run(["cp", "-r", str(ROOT / part), str(fork / part)], check=True)
    add_component(fork)
    # the fork's data derived from renders, regenerated as CONTRIBUTING says
    env = {**os.environ, "OPC_SCHEMA_DIR": os.pathsep.join(map(str, schema_dirs())), "PYTHONPATH": str(fork / "src"),
           "OPC_CHART_DIR": os.pathsep.join(map(str, charts.dirs))}
    derive = [arg for k, v in charts.substitutes.items() for arg in ("--chart-substitute", f"{k}={v}")]
    for script in ("image-paths", "reserved-names"):
        done = subprocess.run([sys.executable, str(fork / "scripts" / script), *derive], cwd=fork, env=env,
                              capture_output=True, text=True, timeout=1200)
        assert done.returncode == 0, done.stderr[-3000:]
    assert COMPONENT in (fork / "hooks" / "image-paths.yml").read_text()
    git(fork, "add", "-A")
    git(fork, "commit", "-q", "-m", f"fork: add {COMPONENT}")
    # The render tests on the two fixtures that between them hold every cloud and both engines
    # (the component lands on every workload cluster), and the byte-identical render.
    selection = f"(valid_fixture_renders or jinja) and ({' or '.join(BROADEST)}) or byte_identical"
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
                             "tests/test_render.py", "-k", selection],
                            cwd=fork, env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:]
    assert f"{2 * len(BROADEST) + 1} passed" in result.stdout, result.stdout[-1000:]
    rendered = list(fork.glob(f"**/{COMPONENT}/release.yaml"))
    assert rendered == []  # renders go to temporary directories, not into the fork
