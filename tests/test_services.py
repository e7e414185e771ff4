"""The rendered Java services build with Maven, pass their own tests (ArchUnit included), start,
and answer a gRPC client that is not Java: Python grpcio with stubs compiled from the rendered
.proto. A layering violation injected into a rendered copy fails the build. A service with a
database runs against a real primary and replica (MariaDB or PostgreSQL, tests/dbservers.py):
Flyway migrates the primary, the entity round-trips, and ShardingSphere sends the write to the
primary and the read to the replica.
"""

from __future__ import annotations

import fcntl
import importlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import dbservers
import grpc
import pytest
import yaml
from conftest import FIXTURES, ROOT
from grpc_health.v1 import health_pb2, health_pb2_grpc
from observability import EXTERNAL_LABELS, dashboard_queries, rule_queries, service_selections

MAVEN_REPO = ROOT / ".cache" / "m2"  # kept between runs; CI starts cold
DOCUMENTED_BUILD = "aliyun-prod-flux.yml"  # built by the rendered repository's own `make services` below


NAME_STRESS = ("long-names.yml", "yaml-hostile-answers.yml")  # fixtures made to break names and quoting


def _other_builds() -> list[tuple[str, str]]:
    """Other fixtures' services, built and tested with Maven: each distinct `services` answer
    once (what a service is made of: its database, shards, calls and secrets; its package only
    renames it), and every service of the fixtures made to stress names and quoting. The fixture
    whose services the rendered repository's `make services` builds (below) is not built twice."""
    seen = {repr(None)}  # the defaults, built and run above
    builds = []
    for path in sorted((FIXTURES / "valid").glob("*.yml")):
        answers = yaml.safe_load(path.read_text()) or {}
        shape = repr([{k: v for k, v in s.items() if k != "package"} for s in answers["services"]]
                     if "services" in answers else None)
        if path.name in ("three-services.yml", DOCUMENTED_BUILD) or (shape in seen and path.name not in NAME_STRESS):
            continue
        seen.add(shape)
        builds += [(f"valid/{path.name}", svc.get("name", "order-service")) for svc in answers.get("services", [{}])]
    return builds


OTHER_BUILDS = _other_builds()
CASES = [("defaults", "order-service")] + [
    ("valid/three-services.yml", s["name"])
    for s in yaml.safe_load((FIXTURES / "valid" / "three-services.yml").read_text())["services"]
]


def scraped_series(text: str) -> dict[str, list[dict[str, str]]]:
    """Sample name -> the label sets of its samples, parsed from a Prometheus text scrape."""
    from prometheus_client.parser import text_string_to_metric_families

    series: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            series.setdefault(sample.name, []).append(dict(sample.labels))
    return series


def unexposed_service_selections(repo: Path, scrape: str) -> list[str]:
    """What the platform's dashboards and alerts select from the services that the scrape lacks."""
    series = scraped_series(scrape)
    problems = []
    selections = service_selections(dashboard_queries(repo) + rule_queries(repo))
    assert selections, "the dashboards and alerts query no service metric"
    for selector in selections:
        if selector.metric not in series:
            problems.append(f"{selector.metric} is queried but not exposed")
            continue
        present = set().union(*series[selector.metric])
        for label, matcher in selector.labels.items():
            if label in EXTERNAL_LABELS:
                continue
            if label not in present:
                problems.append(f"{selector.metric} has no label {label}")
            elif (label == "le" and matcher.startswith("=") and not matcher.startswith("=~")
                  and not any(float(s["le"]) == float(matcher[1:]) for s in series[selector.metric])):
                problems.append(f"{selector.metric} has no bucket le={matcher[1:]}")
    return problems


def mvn_executable() -> str:
    exe = shutil.which("mvn", path=str(ROOT / ".tools" / "bin")) or shutil.which("mvn")
    if exe is None:
        pytest.fail("Maven is not installed: run scripts/install-tools")
    version = subprocess.run([exe, "-v"], capture_output=True, text=True).stdout
    assert "Apache Maven 3.9" in version, f"Maven 3.9 needed (scripts/install-tools installs it):\n{version}"
    return exe


@contextmanager
def maven_lock():
    """One Maven build at a time: parallel test workers share the local repository."""
    MAVEN_REPO.mkdir(parents=True, exist_ok=True)
    with open(MAVEN_REPO.parent / "m2.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


# Every JVM of a build (Maven, the compiler, the test forks) lives for seconds: the client
# compiler alone and the serial collector build the same jars with half the CPU.
SHORT_LIVED_JVMS = {"JAVA_TOOL_OPTIONS": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"}


def mvn(project: Path, *args: str) -> subprocess.CompletedProcess:
    with maven_lock():
        return subprocess.run([mvn_executable(), "-B", f"-Dmaven.repo.local={MAVEN_REPO}", *args],
                              cwd=project, capture_output=True, text=True, timeout=1200,
                              env={**os.environ, **SHORT_LIVED_JVMS})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def database_servers():
    """database_servers(engine) -> a primary and replica of that engine, started once per module
    (per test worker) when first asked for, stopped by PID at the end."""
    started: dict[str, dbservers.Pair] = {}

    def _get(engine: str) -> dbservers.Pair:
        if engine not in started:
            started[engine] = dbservers.start(engine)
        return started[engine]

    yield _get
    for pair in started.values():
        pair.stop()


def shard_of(key: str, shards: int) -> int:
    """The shard the rules pick: Math.floorMod(String.hashCode(key), shards), as Java computes it."""
    h = 0
    encoded = key.encode("utf-16-be")  # Java hashes UTF-16 code units
    for unit in (int.from_bytes(encoded[i:i + 2], "big") for i in range(0, len(encoded), 2)):
        h = (31 * h + unit) & 0xFFFFFFFF
    return (h - (1 << 32) if h >= 1 << 31 else h) % shards  # Python's % is floorMod


def wait_until(check, what: str, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"{what} after {timeout}s"
        time.sleep(0.1)
    return result


def compile_proto(service: Path, out: Path):
    """Python stubs from the rendered .proto, with grpcio-tools' protoc."""
    from grpc_tools import protoc

    proto_root = next(service.glob("*-client")) / "src" / "main" / "proto"
    proto = next(proto_root.rglob("*.proto"))
    out.mkdir(parents=True, exist_ok=True)
    include = Path(importlib.import_module("grpc_tools").__file__).parent / "_proto"
    rc = protoc.main(["protoc", f"-I{proto_root}", f"-I{include}", f"--python_out={out}",
                      f"--grpc_python_out={out}", str(proto)])
    assert rc == 0, "protoc failed on the rendered .proto"
    module = proto.relative_to(proto_root).with_suffix("").as_posix().replace("/", ".")
    sys.path.insert(0, str(out))
    try:
        return importlib.import_module(module + "_pb2"), importlib.import_module(module + "_pb2_grpc")
    finally:
        sys.path.remove(str(out))


@pytest.mark.slow
@pytest.mark.parametrize("fixture, name", CASES, ids=[f"{Path(f).stem}-{n}" for f, n in CASES])
def test_service_builds_runs_and_answers_grpc(fixture: str, name: str, rendered, tmp_path: Path, database_servers):
    repo = rendered(fixture)
    spec = next(s for s in yaml.safe_load((repo / ".copier-answers.yml").read_text())["services"] if s["name"] == name)
    service = tmp_path / name
    shutil.copytree(repo / "services" / name, service)

    started = time.perf_counter()
    build = mvn(service, "verify")
    build_seconds = time.perf_counter() - started
    assert build.returncode == 0, build.stdout[-4000:]
    assert "Tests run:" in build.stdout and "FAILURE" not in build.stdout
    jar = service / "start" / "target" / f"{name}.jar"
    assert jar.is_file()

    entity = spec["grpc_service"].removesuffix("Service") or spec["grpc_service"]
    pb2, pb2_grpc = compile_proto(service, tmp_path / "py")
    grpc_port, metrics_port = free_port(), free_port()
    env = {**os.environ, "GRPC_PORT": str(grpc_port), "METRICS_PORT": str(metrics_port), "LOG_LEVEL": "INFO"}
    engine, shards = spec.get("database", "none"), spec.get("shards", 1)
    if engine != "none":
        servers = database_servers(engine)
        database = name.replace("-", "_")
        shard_databases = [f"{database}_{i}" for i in range(shards)] if shards > 1 else [database]
        table = next((service / f"{name}-infrastructure" / "src" / "main" / "resources" / "db" / "migration")
                     .glob("V1__create_*.sql")).stem.removeprefix("V1__create_")
        servers.create(shard_databases, database, "s3cret")
        # the rules the clusters get (the Application's), not the service's built-in ones
        application = yaml.safe_load((repo / "apps" / name / "application.yaml").read_text())
        rules = tmp_path / "rules.yaml"
        rules.write_text(application["spec"]["components"][0]["properties"]["database"]["rules"])
        named = database + ("_{shard}" if shards > 1 else "")
        env |= {"SHARDINGSPHERE_RULES": str(rules), "DATABASE_WRITE_URL": servers.url(servers.primary_port, named),
                "DATABASE_READ_URL": servers.url(servers.replica_port, named),
                "DATABASE_USERNAME": database, "DATABASE_PASSWORD": "s3cret", "DATABASE_SHARDS": str(shards)}
    launched = time.perf_counter()
    proc = subprocess.Popen(["java", "-jar", str(jar)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        health = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + 60
        while True:
            try:
                status = health.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    break
            except grpc.RpcError:
                pass
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "service never became SERVING"
            time.sleep(0.02)
        ready_seconds = time.perf_counter() - launched
        full_name = f"{spec['package']}.v1.{spec['grpc_service']}"
        assert health.Check(health_pb2.HealthCheckRequest(service=full_name)).status == \
            health_pb2.HealthCheckResponse.SERVING

        stub = getattr(pb2_grpc, f"{spec['grpc_service']}Stub")(channel)
        create = getattr(stub, f"Create{entity}")
        get = getattr(stub, f"Get{entity}")
        request = getattr(pb2, f"Create{entity}Request")(owner_id="o-1", item_id="i-1", quantity=3, unit_price_minor=250)
        t0 = time.perf_counter()
        created = create(request, timeout=10)
        first_call_ms = (time.perf_counter() - t0) * 1000
        field = next(f.name for f in created.DESCRIPTOR.fields)  # the aggregate
        made = getattr(created, field)
        assert made.total_minor == 750 and made.status == "CREATED" and made.owner_id == "o-1"
        id_field = next(f.name for f in made.DESCRIPTOR.fields if f.name.endswith("_id") and f.name not in ("owner_id", "item_id"))
        if engine != "none":
            # the row reaches the replica by replication; then the reads each server has served so far
            made_id = getattr(made, id_field)
            home = shard_databases[shard_of(made_id, shards)]
            row = f"SELECT quantity, unit_price_minor, status FROM {table} WHERE id = '{made_id}'"
            wait_until(lambda: servers.sql("replica", row, home), "the row never reached the replica")
            wait_until(lambda: servers.rows_read_and_changed("primary", home, table)[1] == 1,
                       "the insert is not counted on the primary")
            before = {server: servers.reads(server, home, table) for server in ("primary", "replica")}
        fetched = get(getattr(pb2, f"Get{entity}Request")(**{id_field: getattr(made, id_field)}), timeout=10)
        assert getattr(fetched, field) == made
        with pytest.raises(grpc.RpcError) as missing:
            get(getattr(pb2, f"Get{entity}Request")(**{id_field: "does-not-exist"}), timeout=10)
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        if engine != "none":
            # ShardingSphere's routing: the write went to the primary, both reads to the replica
            assert servers.reads("replica", home, table) >= before["replica"] + 1, "no read reached the replica"
            assert servers.reads("primary", home, table) == before["primary"], "a read reached the primary"
            # Flyway migrated every shard's primary (and its history replicated); the row holds what was sent
            for server in ("primary", "replica"):
                for shard_database in shard_databases:
                    assert servers.sql(server, "SELECT version, success FROM flyway_schema_history", shard_database) \
                        in ([["1", "1"]], [["1", "t"]]), (server, shard_database)
            assert servers.sql("primary", row, home) == [["3", "250", "CREATED"]]
            if shards > 1:  # each row in the shard the hash of its id names, and in no other
                made_ids = {made_id} | {getattr(getattr(create(request, timeout=10), field), id_field) for _ in range(15)}
                for shard, shard_database in enumerate(shard_databases):
                    assert {r[0] for r in servers.sql("primary", f"SELECT id FROM {table}", shard_database)} == \
                        {i for i in made_ids if shard_of(i, shards) == shard}, shard_database

        metrics = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
        # every service metric (and label, and SLO bucket) the platform's dashboards and alerts use
        assert unexposed_service_selections(repo, metrics) == []
        assert f'method="Create{entity}"' in metrics and f'service="{full_name}"' in metrics

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) in (0, 143)
        logs = proc.stdout.read()
        assert '"message":"shutdown requested' in logs  # structured JSON logs, graceful stop
        print(f"\n{name}: build {build_seconds:.1f}s, jar {jar.stat().st_size / 1e6:.1f} MB, "
              f"ready {ready_seconds:.2f}s, first call {first_call_ms:.0f} ms")
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.slow
@pytest.mark.parametrize("fixture, name", OTHER_BUILDS, ids=[f"{Path(f).stem}-{n}" for f, n in OTHER_BUILDS])
def test_every_fixtures_service_builds(fixture: str, name: str, rendered, tmp_path: Path):
    """`mvn -B verify` (compile, unit and ArchUnit tests, jar) for the services of every fixture:
    packages and names derived from odd company names must still make valid Java."""
    service = tmp_path / name
    shutil.copytree(rendered(fixture) / "services" / name, service)
    build = mvn(service, "verify")
    assert build.returncode == 0, build.stdout[-4000:]
    assert "Tests run:" in build.stdout and "BUILD SUCCESS" in build.stdout
    assert (service / "start" / "target" / f"{name}.jar").is_file()


DATA_PATH = ("org.flywaydb", "org.apache.shardingsphere", "com.zaxxer", "mysql-connector-j", "org.postgresql",
             "infrastructure.database", "DATABASE_WRITE_URL")


@pytest.mark.parametrize("fixture", ["defaults", "valid/three-services.yml"])
def test_a_database_renders_only_where_asked_for(fixture: str, rendered):
    """database: none renders nothing of the data path; mysql and postgresql render it with their
    own driver and Flyway module, and nothing of the other engine."""
    repo = rendered(fixture)
    specs = yaml.safe_load((repo / ".copier-answers.yml").read_text())["services"]
    engines = {s["name"]: s.get("database", "none") for s in specs}
    assert set(engines.values()) == ({"none"} if fixture == "defaults" else {"none", "mysql", "postgresql"})
    for name, engine in engines.items():
        service = repo / "services" / name
        text = {p.relative_to(service).as_posix(): p.read_text() for p in service.rglob("*") if p.is_file()}
        data_files = sorted(p for p in text if "/database/" in p or "/db/migration/" in p or p.endswith("shardingsphere.yaml"))
        if engine == "none":
            assert data_files == [], name
            assert [p for p, t in text.items() if any(word in t for word in DATA_PATH)
                    and not p.endswith("/ArchitectureTest.java")] == [], name  # its rule names them all
            continue
        table = {"order-service": "orders", "payment-service": "payments"}[name]
        assert sorted(p.rsplit("/", 1)[1] for p in data_files) == sorted([
            "shardingsphere.yaml", "Database.java", "DatabaseConfig.java", "PersistenceException.java",
            f"V1__create_{table}.sql"]), data_files
        assert f"CREATE TABLE {table} (" in next(t for p, t in text.items() if p.endswith(f"V1__create_{table}.sql"))
        poms = "".join(t for p, t in text.items() if p.endswith("pom.xml"))
        ours, other = ("mysql-connector-j", "org.postgresql") if engine == "mysql" else ("org.postgresql", "mysql-connector-j")
        assert ours in poms and other not in poms, name
        assert ("flyway-mysql" in poms) == (engine == "mysql") and ("flyway-database-postgresql" in poms) == (engine != "mysql")


@pytest.mark.slow
def test_layering_violation_fails_the_build(rendered, tmp_path: Path):
    """An adapter that reaches into the infrastructure compiles, but ArchUnit fails `mvn verify`."""
    repo = rendered("defaults")
    service = tmp_path / "order-service"
    shutil.copytree(repo / "services" / "order-service", service)
    answers = yaml.safe_load((repo / ".copier-answers.yml").read_text())
    package = answers["services"][0]["package"]
    adapter_pom = service / "order-service-adapter" / "pom.xml"
    pom = adapter_pom.read_text()
    adapter_pom.write_text(pom.replace("<dependencies>", f"""<dependencies>
    <dependency>
      <groupId>{package}</groupId>
      <artifactId>order-service-infrastructure</artifactId>
    </dependency>""", 1))
    shortcut = service / "order-service-adapter" / "src" / "main" / "java" / Path(*package.split(".")) / "adapter" / "grpc" / "OrderCountShortcut.java"
    shortcut.write_text(f"""package {package}.adapter.grpc;

import {package}.infrastructure.order.OrderGatewayImpl;

/** Skips the app layer: exactly what the architecture rules forbid. */
public class OrderCountShortcut {{
  private final OrderGatewayImpl gateway = new OrderGatewayImpl();

  public boolean exists(String id) {{
    return gateway.findById(id).isPresent();
  }}
}}
""")
    build = mvn(service, "verify")
    assert build.returncode != 0
    assert "adapter_does_not_depend_on_infrastructure" in build.stdout
    assert "OrderCountShortcut" in build.stdout
    assert "BUILD FAILURE" in build.stdout


def test_service_metric_check_catches_what_a_service_lacks(rendered):
    """The live-scrape check above, on a scrape that lacks a metric, a label and the SLO bucket."""
    scrape = "\n".join([
        "# TYPE jvm_memory_used_bytes gauge",
        'jvm_memory_used_bytes{application="order-service",id="G1 Eden Space"} 1.0',
        "# TYPE grpc_server_processing_duration_seconds histogram",
        'grpc_server_processing_duration_seconds_bucket{service="s",statusCode="OK",application="a",le="0.1"} 1.0',
        'grpc_server_processing_duration_seconds_bucket{service="s",statusCode="OK",application="a",le="+Inf"} 1.0',
        'grpc_server_processing_duration_seconds_count{service="s",statusCode="OK",application="a"} 1.0',
        'grpc_server_processing_duration_seconds_sum{service="s",statusCode="OK",application="a"} 0.01',
        "",
    ])
    problems = unexposed_service_selections(rendered("defaults"), scrape)
    assert "logback_events_total is queried but not exposed" in problems
    assert "jvm_memory_used_bytes has no label area" in problems
    assert "grpc_server_processing_duration_seconds_bucket has no bucket le=0.25" in problems


@pytest.mark.slow
def test_documented_maven_command_builds_the_services(rendered_copy):
    """The rendered repository's own way to the right Maven (`make maven`, with the machine's
    Debian Maven 3.8) and `make services` build every service."""
    repo = rendered_copy(f"valid/{DOCUMENTED_BUILD}")
    debian_mvn = shutil.which("mvn", path="/usr/bin")
    assert debian_mvn, "Debian's maven package is needed (scripts/install-tools installs it)"
    assert "Apache Maven 3.8" in subprocess.run([debian_mvn, "-v"], capture_output=True, text=True).stdout
    env = {**os.environ, **SHORT_LIVED_JVMS, "MAVEN_ARGS": f"-Dmaven.repo.local={MAVEN_REPO}"}
    with maven_lock():
        installed = subprocess.run(["make", "maven", f"MVN={debian_mvn}"], cwd=repo, capture_output=True, text=True,
                                   env=env, timeout=600)
        assert installed.returncode == 0, installed.stdout + installed.stderr
        assert "Apache Maven 3.9" in installed.stdout
        built = subprocess.run(["make", "services"], cwd=repo, capture_output=True, text=True, env=env, timeout=1200)
    assert built.returncode == 0, built.stdout[-4000:]
    assert "BUILD SUCCESS" in built.stdout
    assert (repo / "services/order-service/start/target/order-service.jar").is_file()
