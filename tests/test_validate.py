"""`opc validate` on small hand-made repositories: each check fires on the input it exists for."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import catalog

from opc.cli import main
from opc.schemas import SchemaStore, _fix_crd_schema
from opc.validate import validate_repo

GOOD_STORAGE_CLASS = """\
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: ssd
provisioner: diskplugin.csi.alibabacloud.com
"""

GOOD_HELM_RELEASE = """\
---
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: demo
  namespace: demo
spec:
  interval: 30m
  chart:
    spec:
      chart: demo
      version: "1.0.0"
      sourceRef:
        kind: HelmRepository
        name: demo
  values:
    anything:
      goes: [here]
"""


def flux_crd_source() -> str:
    """crd-sources.yaml naming the module of Flux's HelmRelease CRD, as the catalogue pins it."""
    source = next(s for s in catalog().crd_sources if "helm.toolkit.fluxcd.io" in s["groups"])
    return (f"---\n- groups: [helm.toolkit.fluxcd.io]\n  module: {source['module']}\n  version: {source['version']}\n"
            f"  paths: [{', '.join(source['paths'])}]\n")


def make_repo(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / ".yamllint").write_text("---\nextends: default\n")
    (root / "crd-sources.yaml").write_text(flux_crd_source())
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def kustomization(*resources: str) -> str:
    return "---\nresources:\n" + "".join(f"  - {r}\n" for r in resources)


def run(root: Path, schemas: list[Path] | None):
    return validate_repo(root, schemas or [])


def test_valid_repo(tmp_path: Path, schemas: list[Path]):
    repo = make_repo(tmp_path, {
        "base/kustomization.yaml": kustomization("sc.yaml", "hr.yaml"),
        "base/sc.yaml": GOOD_STORAGE_CLASS,
        "base/hr.yaml": GOOD_HELM_RELEASE,
    })
    report = run(repo, schemas)
    assert report.ok, [str(f) for f in report.findings]
    assert (report.built, report.valid, report.invalid, report.missing) == (1, 2, 0, 0)
    assert report.summary().startswith("1 kustomizations built, 0 chart renders (0 objects), 2 objects valid, "
                                       "0 invalid, 0 missing")


@pytest.mark.parametrize("broken, message", [
    (GOOD_STORAGE_CLASS + "volumeBindingMod: Immediate\n", "'volumeBindingMod' was unexpected"),
    (GOOD_HELM_RELEASE.replace("      version:", "      versoin:"), "'versoin' was unexpected"),
    (GOOD_HELM_RELEASE.replace("spec:\n  interval", "sepc:\n  interval"), "'sepc' was unexpected"),
    (GOOD_HELM_RELEASE.replace("  namespace: demo", "  namespace: demo\n  labelz: {a: b}"), "'labelz' was unexpected"),
    (GOOD_HELM_RELEASE.replace("interval: 30m", "interval: [30m]"), "is not of type"),
    (GOOD_STORAGE_CLASS.replace("name: ssd", "name: SSD_Disks"), "DNS-1123 subdomain"),
    (GOOD_STORAGE_CLASS.replace("name: ssd", "name: ssd\n  labels:\n    team: " + "x" * 64), "at most 63 characters"),
    (GOOD_STORAGE_CLASS.replace("name: ssd", "name: ssd\n  labels:\n    -bad/key: v"), "DNS-1123 subdomain"),
], ids=["core-unknown-field", "crd-unknown-field", "crd-misspelt-root-field", "crd-metadata-unknown-field",
        "crd-wrong-type", "bad-name", "label-value-too-long", "bad-label-key"])
def test_invalid_object_is_reported(tmp_path: Path, schemas: list[Path], broken: str, message: str):
    repo = make_repo(tmp_path, {"k/kustomization.yaml": kustomization("o.yaml"), "k/o.yaml": broken})
    report = run(repo, schemas)
    assert report.invalid == 1 and not report.ok
    assert any(message in f.message and f.category == "invalid" for f in report.findings), report.findings


def test_object_without_schema_is_missing_not_passed(tmp_path: Path, schemas: list[Path]):
    repo = make_repo(tmp_path, {
        "k/kustomization.yaml": kustomization("o.yaml", "hr.yaml"),
        "k/o.yaml": "---\napiVersion: alibabacloud.com/v1\nkind: AlbConfig\nmetadata:\n  name: alb\nspec: {}\n",
        "k/hr.yaml": GOOD_HELM_RELEASE,
    })
    report = run(repo, schemas)
    assert (report.valid, report.missing) == (1, 1) and not report.ok
    (repo / "crd-sources.yaml").unlink()
    assert run(repo, None).missing == 2  # with no schema source at all every custom resource is missing


def test_build_failure_is_reported(tmp_path: Path, schemas: list[Path]):
    repo = make_repo(tmp_path, {"k/kustomization.yaml": kustomization("absent.yaml")})
    report = run(repo, schemas)
    assert report.failed_builds == 1 and not report.ok
    assert report.findings[0].category == "build" and report.findings[0].where == "k"


def test_components_are_built(tmp_path: Path, schemas: list[Path]):
    repo = make_repo(tmp_path, {
        "c/kustomization.yaml": "---\napiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\n"
                                "resources:\n  - sc.yaml\n",
        "c/sc.yaml": GOOD_STORAGE_CLASS.replace("provisioner:", "provisionr:"),
    })
    report = run(repo, schemas)
    assert report.built == 1 and report.invalid == 1


def test_lint_problems_fail(tmp_path: Path, schemas: list[Path]):
    repo = make_repo(tmp_path, {
        "k/kustomization.yaml": kustomization("sc.yaml"),
        "k/sc.yaml": GOOD_STORAGE_CLASS.replace("name: ssd", "name: ssd   "),
        "notes/extra.yaml": "---\nkey: value\nkey: again\n",
    })
    report = run(repo, schemas)
    rules = {f.message.split("(")[-1].rstrip(")") for f in report.findings if f.category == "lint"}
    assert {"trailing-spaces", "key-duplicates"} <= rules and report.valid == 1 and not report.ok


def test_unreadable_file_is_a_finding(tmp_path: Path, schemas: list[Path]):
    """A C1 control character (U+0092) or bytes that are not UTF-8: one finding each, no traceback."""
    repo = make_repo(tmp_path, {
        "k/kustomization.yaml": kustomization("sc.yaml"),
        "k/sc.yaml": GOOD_STORAGE_CLASS,
        "notes/name.yaml": "---\ncompany: Acme\u0092Co\n",
    })
    (repo / "notes" / "latin1.yaml").write_bytes(b"---\ncompany: Acm\xe9\n")
    report = run(repo, schemas)
    unreadable = sorted((f.where, f.message) for f in report.findings if "unreadable" in f.message)
    assert unreadable == [
        ("notes/latin1.yaml", "1:1 not UTF-8 text: byte 0xe9 at position 16 (unreadable)"),
        ("notes/name.yaml", "1:1 not readable as YAML: character #x0092 at position 17 is not allowed (unreadable)"),
    ], report.findings
    assert report.valid == 1 and not report.ok
    result = CliRunner().invoke(main, ["validate", str(repo), "-q", "--no-charts"])
    assert result.exit_code == 1 and "Traceback" not in result.output and "#x0092" in result.output


def test_two_definitions_of_one_object_in_a_cluster(tmp_path: Path, schemas: list[Path]):
    """Two deployable units of one cluster define the same object: reported, identical or not."""
    namespace = "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: monitoring\n  labels:\n    level: {}\n"
    repo = make_repo(tmp_path, {
        "clusters/hub/kustomization.yaml": kustomization("ns.yaml"),
        "clusters/hub/ns.yaml": namespace.format("baseline"),
        "clusters/hub/extra/kustomization.yaml": kustomization("ns.yaml", "sc.yaml"),
        "clusters/hub/extra/ns.yaml": namespace.format("privileged"),
        "clusters/hub/extra/sc.yaml": GOOD_STORAGE_CLASS,
        "clusters/edge/kustomization.yaml": kustomization("ns.yaml"),
        "clusters/edge/ns.yaml": namespace.format("baseline"),
    })
    from opc.conflicts import check_conflicts

    report = validate_repo(repo, schemas, wiring=[check_conflicts])
    conflicts = [(f.where, f.subject, f.message) for f in report.findings if f.category == "conflict"]
    assert conflicts == [("clusters/hub", "Namespace monitoring",
                          "cluster hub gets 2 different definitions of this object, from clusters/hub, "
                          "clusters/hub/extra: one owner per object")], report.findings
    (repo / "clusters/hub/extra/ns.yaml").write_text(namespace.format("baseline"))
    again = [f.message for f in validate_repo(repo, schemas, wiring=[check_conflicts]).findings
             if f.category == "conflict"]
    assert len(again) == 1 and "2 identical definitions" in again[0]


def test_crd_schema_corrections():
    fixed = _fix_crd_schema({
        "type": "object",
        "properties": {
            "open": {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": False,
                     "x-kubernetes-preserve-unknown-fields": True},
            "maybe": {"type": "string", "nullable": True},
            "port": {"x-kubernetes-int-or-string": True},
        },
    })
    assert "additionalProperties" not in fixed["properties"]["open"]
    assert fixed["properties"]["maybe"]["type"] == ["string", "null"]
    assert fixed["properties"]["port"]["anyOf"] == [{"type": "integer"}, {"type": "string"}]


WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {"group": "example.com", "names": {"kind": "Widget", "plural": "widgets"}, "scope": "Namespaced",
             "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                 "type": "object", "properties": {"spec": {"type": "object", "properties": {
                     "size": {"type": "integer"}}}}}}}]},
}


def test_schema_store_order_of_sources(tmp_path: Path):
    """Built-in kinds from Kubernetes' schemas, then a release's CRD, then a schema directory."""
    (tmp_path / "example.com").mkdir()
    (tmp_path / "example.com" / "gadget_v1.json").write_text('{"type": "object"}')
    (tmp_path / "example.com" / "widget_v1.json").write_text('{"type": "object"}')
    store = SchemaStore([tmp_path])
    store.add_crd(WIDGET_CRD, "chart widgets 1.0.0")
    assert store.validator("v1", "ConfigMap")[1].startswith("kubernetes")
    assert store.validator("example.com/v1", "Widget")[1] == "chart widgets 1.0.0"
    assert store.validator("example.com/v1", "Gadget")[1].endswith("gadget_v1.json")
    assert store.validator("example.com/v1", "Nothing")[0] is None
    widget = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "n"},
              "spec": {"size": 3}}
    assert store.validate(widget).status == "valid"
    widget["spec"]["colour"] = "red"  # a CRD lists its properties: no others (strict field validation)
    assert "'colour' was unexpected" in store.validate(widget).errors[0]


def test_cli_exit_codes_and_summary(tmp_path: Path):
    good = make_repo(tmp_path / "good", {"k/kustomization.yaml": kustomization("sc.yaml"), "k/sc.yaml": GOOD_STORAGE_CLASS})
    env = {"OPC_SCHEMA_DIR": None, "OPC_CHART_DIR": None}  # as CONTRIBUTING suggests setting them: not used here
    result = CliRunner().invoke(main, ["validate", str(good)], env=env)
    assert result.exit_code == 0, result.output
    assert "1 kustomizations built, 0 chart renders (0 objects), 1 objects valid, 0 invalid, 0 missing" in result.output
    assert "built 1 of 1 kustomizations" in result.output  # progress (stderr is mixed in by CliRunner)
    bad = make_repo(tmp_path / "bad", {"k/kustomization.yaml": kustomization("hr.yaml"), "k/hr.yaml": GOOD_HELM_RELEASE})
    (bad / "crd-sources.yaml").unlink()
    result = CliRunner().invoke(main, ["validate", str(bad)], env=env)
    assert result.exit_code == 1
    assert "0 objects valid, 0 invalid, 1 missing" in result.output
    assert "MISSING  k: HelmRelease demo/demo: no schema for HelmRelease helm.toolkit.fluxcd.io/v2" in result.output


def test_schema_location_template(tmp_path: Path):
    repo = make_repo(tmp_path / "repo", {"k/kustomization.yaml": kustomization("hr.yaml"), "k/hr.yaml": GOOD_HELM_RELEASE})
    (repo / "crd-sources.yaml").unlink()
    schemas = tmp_path / "schemas"
    (schemas / "helm.toolkit.fluxcd.io").mkdir(parents=True)
    (schemas / "helm.toolkit.fluxcd.io" / "helmrelease_v2.json").write_text('{"type": "object", "properties": {"spec": {}}}')
    location = f"file://{schemas}/{{{{.Group}}}}/{{{{.ResourceKind}}}}_{{{{.ResourceAPIVersion}}}}.json"
    report = validate_repo(repo, [], schema_locations=[location])
    assert report.ok and report.valid == 1, [str(f) for f in report.findings]
    result = CliRunner().invoke(main, ["validate", str(repo), "--schema-location", location, "-q"])
    assert result.exit_code == 0 and "1 objects valid" in result.output


def test_kustomize_answers_are_kept_by_everything_a_build_can_read(tmp_path: Path):
    """A build is not repeated for an unchanged tree, wherever its copy lives; a change to any
    file the build can read (its own folder's, an included folder's) builds it again, and a
    change elsewhere does not."""
    from opc import kustomize

    files = {
        "base/kustomization.yaml": kustomization("config.yaml"),
        "base/config.yaml": "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {k: one}\n",
        "app/kustomization.yaml": kustomization("../base"),
        "elsewhere/notes.yaml": "---\nk: v\n",
    }
    first, second = make_repo(tmp_path / "a", files), make_repo(tmp_path / "b", files)
    own: dict[Path, str] = {}
    assert kustomize.fingerprint(first / "app", own) == kustomize.fingerprint(second / "app", own)
    before = kustomize.fingerprint(second / "app", {})
    (second / "elsewhere" / "notes.yaml").write_text("---\nk: changed\n")
    assert kustomize.fingerprint(second / "app", {}) == before
    (second / "base" / "config.yaml").write_text(files["base/config.yaml"].replace("one", "two"))
    assert kustomize.fingerprint(second / "app", {}) != before
    [built_first] = kustomize.build_all([first / "app"])
    [built_second] = kustomize.build_all([second / "app"])
    assert built_first.objects[0]["data"] == {"k": "one"} and built_second.objects[0]["data"] == {"k": "two"}
    built_first.objects[0]["data"]["k"] = "mutated by a caller"
    [again] = kustomize.build_all([first / "app"])
    assert again.objects[0]["data"] == {"k": "one"} and again.path == first / "app"


def test_lint_answers_are_kept_by_content(tmp_path: Path):
    from opc.lint import lint_tree

    for name in ("a", "b"):
        make_repo(tmp_path / name, {"x.yaml": "---\nkey: value\n"})
    assert lint_tree(tmp_path / "a")[1] == lint_tree(tmp_path / "b")[1] == []
    (tmp_path / "b" / "x.yaml").write_text("---\nkey:   value\n")
    problems = lint_tree(tmp_path / "b")[1]
    assert [p.rule for p in problems] == ["colons"] and lint_tree(tmp_path / "a")[1] == []
