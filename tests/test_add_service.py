"""`opc add service`: the answers file keeps its comments and order, the new service is rendered."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from conftest import git, snapshot_template

from opc.cli import main
from opc.render import render_new
from opc.validate import validate_repo
from opc.wiring import ALL_CHECKS


@pytest.fixture(scope="module")
def released_template(tmp_path_factory) -> Path:
    template = snapshot_template(tmp_path_factory.mktemp("released") / "template")
    git(template, "tag", "v0.1.0")
    return template


@pytest.fixture
def project(released_template: Path, tmp_path: Path) -> Path:
    dest = render_new(tmp_path / "acme", {}, template=str(released_template), quiet=True)
    answers = dest / ".copier-answers.yml"
    answers.write_text(answers.read_text().replace("gitops: flux\n", "gitops: flux  # pull-based on purpose\n"))
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "rendered")
    return dest


ARGS = ["payment-service", "--package", "com.acme.payment", "--grpc-service", "PaymentService", "--port", "50052"]


def test_add_service_renders_it_and_keeps_comments(project: Path, schemas: list[Path], charts):
    result = CliRunner().invoke(main, ["add", "service", *ARGS, "--database", "postgresql", "--shards", "2",
                                       "--dir", str(project)])
    assert result.exit_code == 0, result.output
    text = (project / ".copier-answers.yml").read_text()
    assert "gitops: flux  # pull-based on purpose" in text and text.startswith("---\n# Changes here")
    answers = yaml.safe_load(text)
    assert [s["name"] for s in answers["services"]] == ["order-service", "payment-service"]
    assert answers["services"][1] == {"name": "payment-service", "package": "com.acme.payment",
                                      "grpc_service": "PaymentService", "port": 50052, "database": "postgresql",
                                      "shards": 2}
    assert "database" not in answers["services"][0]  # defaults stay out of the answers
    infrastructure = project / "services/payment-service/payment-service-infrastructure/src/main/resources"
    assert (infrastructure / "db/migration/V1__create_payments.sql").is_file()
    assert "shard_${0..1}.payments" in (infrastructure / "shardingsphere.yaml").read_text()
    assert "payment-service-database" in (project / "apps/payment-service/secrets.yaml").read_text()
    assert answers["_commit"] == "v0.1.0"  # adding a service does not upgrade the platform
    assert (project / "services/payment-service/payment-service-domain/src/main/java/com/acme/payment/domain/payment/Payment.java").is_file()
    assert "payment-service/application.yaml" in (project / "apps/kustomization.yaml").read_text()
    assert "added     apps/payment-service/application.yaml" in result.output
    report = validate_repo(project, schemas, wiring=ALL_CHECKS, charts=charts)
    assert report.ok, [str(f) for f in report.findings]


def test_add_service_refuses_duplicates_bad_input_and_dirty_trees(project: Path):
    run = lambda *args: CliRunner().invoke(main, ["add", "service", *args, "--dir", str(project)])  # noqa: E731
    result = run("order-service", "--package", "com.acme.x", "--grpc-service", "XService", "--port", "50060")
    assert result.exit_code == 2 and "already exists" in result.output
    result = run("billing", "--package", "com.acme.new", "--grpc-service", "BillingService", "--port", "50060")
    assert result.exit_code == 2 and "must not use a Java keyword" in result.output
    result = run("billing-service", "--package", "com.acme.billing", "--grpc-service", "BillingService", "--port",
                 "50060", "--shards", "2")
    assert result.exit_code == 2 and "it has none: set database too" in result.output, result.output
    result = run(*ARGS, "--database", "oracle")
    assert result.exit_code == 2 and "'oracle' is not one of 'none', 'mysql', 'postgresql'" in result.output
    assert git(project, "status", "--porcelain") == ""  # nothing written
    (project / "notes.txt").write_text("work in progress")
    result = run(*ARGS)
    assert result.exit_code == 2 and "uncommitted changes" in result.output
