"""Real database servers for the services' data path, from Debian's packages: a MariaDB primary
with a replica (binlog replication), and a PostgreSQL primary with a hot standby (streaming
replication). Each listens on 127.0.0.1 only, on a free port, in a fresh data directory; each is
started here and stopped by its PID. No server that is missing is faked: the tests fail.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from opc.controlplane import terminate

START_TIMEOUT = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    pytest.fail(f"nothing listens on 127.0.0.1:{port} after {START_TIMEOUT}s:\n{log.read_text()[-3000:]}")


def _run(cmd: list[str], **kwargs) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kwargs)
    if done.returncode:
        pytest.fail(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done.stdout


@dataclass
class Pair:
    """A primary and its replica; `sql(server, statement)` runs SQL as the administrator."""

    def boot(self) -> None:
        raise NotImplementedError

    def create(self, databases: list[str], user: str, password: str) -> None:
        """The service's databases on the primary (they replicate), and its login owning them."""
        raise NotImplementedError

    def rows_read_and_changed(self, server: str, database: str, table: str) -> tuple[int, int]:
        """The rows of `table` the server has read and changed for its clients, by its own statistics."""
        raise NotImplementedError

    def reads(self, server: str, database: str, table: str) -> int:
        """How many reads of `table` the server has served, counted as they happen."""
        raise NotImplementedError

    def sql(self, server: str, statement: str, database: str = "") -> list[list[str]]:
        raise NotImplementedError

    engine: str
    root: Path
    primary_port: int = field(default_factory=free_port)
    replica_port: int = field(default_factory=free_port)
    procs: list[subprocess.Popen] = field(default_factory=list)

    def url(self, port: int, database: str) -> str:
        scheme = "mysql" if self.engine == "mysql" else "postgresql"
        return f"jdbc:{scheme}://127.0.0.1:{port}/{database}"

    def stop(self) -> None:
        for proc in reversed(self.procs):  # the replica first
            terminate(proc, timeout=30)
        shutil.rmtree(self.root, ignore_errors=True)


# --- MariaDB ---------------------------------------------------------------------------------

def _mariadb_tool(name: str) -> str:
    exe = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if exe is None:
        pytest.fail(f"{name} is not installed (scripts/install-tools installs mariadb-server)")
    return exe


class MariaDB(Pair):
    def boot(self) -> None:
        user = getpass.getuser()
        for role, port, server_id in (("primary", self.primary_port, 1), ("replica", self.replica_port, 2)):
            data = self.root / role
            _run([_mariadb_tool("mariadb-install-db"), "--no-defaults", f"--datadir={data}",
                  "--auth-root-authentication-method=normal", f"--user={user}", "--skip-test-db"])
            log = self.root / f"{role}.log"
            args = [_mariadb_tool("mariadbd"), "--no-defaults", f"--datadir={data}", f"--socket={data}.sock",
                    f"--port={port}", "--bind-address=127.0.0.1", f"--user={user}", f"--pid-file={data}.pid",
                    f"--log-error={log}", f"--server-id={server_id}", "--skip-name-resolve", "--userstat=1",
                    "--innodb-buffer-pool-size=32M", "--innodb-flush-log-at-trx-commit=0"]
            args += (["--log-bin=binlog", "--binlog-format=ROW"] if role == "primary"
                     else ["--read-only=1", "--relay-log=relay"])
            log.touch()
            self.procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            _wait_for_port(port, self.procs[-1], log)
        self.sql("primary", "SET sql_log_bin = 0; CREATE USER 'replication'@'127.0.0.1' IDENTIFIED BY 'replication'; "
                 "GRANT REPLICATION SLAVE ON *.* TO 'replication'@'127.0.0.1'")
        self.sql("replica", f"CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = {self.primary_port}, "
                 "MASTER_USER = 'replication', MASTER_PASSWORD = 'replication', MASTER_USE_GTID = slave_pos; "
                 "START SLAVE")

    def sql(self, server: str, statement: str, database: str = "") -> list[list[str]]:
        out = _run([_mariadb_tool("mariadb"), "--no-defaults", f"--socket={self.root / server}.sock", "-uroot",
                    "-N", "-B", "-e", statement, *([database] if database else [])])
        return [line.split("\t") for line in out.splitlines()]

    def create(self, databases: list[str], user: str, password: str) -> None:
        grants = "; ".join(f"CREATE DATABASE {d}; GRANT ALL ON {d}.* TO '{user}'@'127.0.0.1'" for d in databases)
        self.sql("primary", f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY '{password}'; {grants}")

    def rows_read_and_changed(self, server: str, database: str, table: str) -> tuple[int, int]:
        rows = self.sql(server, "SELECT ROWS_READ, ROWS_CHANGED FROM information_schema.TABLE_STATISTICS "
                        f"WHERE TABLE_SCHEMA = '{database}' AND TABLE_NAME = '{table}'")
        return (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)

    def reads(self, server: str, database: str, table: str) -> int:
        return self.rows_read_and_changed(server, database, table)[0]  # updated as each statement ends


# --- PostgreSQL ------------------------------------------------------------------------------

def _postgres_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parts[4]))
    if not found:
        pytest.fail("PostgreSQL is not installed (scripts/install-tools installs postgresql)")
    return found[-1].parent


class PostgreSQL(Pair):
    def boot(self) -> None:
        # PostgreSQL refuses to run as root: as root, the servers run as Debian's postgres user.
        self.as_user = {"user": "postgres", "group": "postgres"} if os.geteuid() == 0 else {}
        if self.as_user:
            shutil.chown(self.root, "postgres", "postgres")
        bindir = _postgres_bin()
        primary, replica = self.root / "primary", self.root / "replica"
        _run([str(bindir / "initdb"), "-D", str(primary), "-U", "postgres", "--auth=trust", "--no-sync",
              "--encoding=UTF8", "--locale=C"], **self.as_user)
        self._start(bindir, primary, self.primary_port)
        _run([str(bindir / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(self.primary_port), "-U", "postgres",
              "-D", str(replica), "-R", "-X", "stream", "--no-sync"], **self.as_user)
        self._start(bindir, replica, self.replica_port)
        self.psql = str(bindir / "psql")

    def _start(self, bindir: Path, data: Path, port: int) -> None:
        log = data.parent / f"{data.name}.log"
        with open(log, "w") as out:
            self.procs.append(subprocess.Popen(
                [str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-c", "listen_addresses=127.0.0.1",
                 "-c", f"unix_socket_directories={data.parent}", "-c", "fsync=off", "-c", "shared_buffers=32MB",
                 # every statement, with its database, in the server's log: reads are counted as they happen
                 "-c", "log_statement=all", "-c", "log_line_prefix=[%d] "],
                stdout=out, stderr=subprocess.STDOUT, **self.as_user))
        _wait_for_port(port, self.procs[-1], log)
        # the port opens before the server accepts sessions ("the database system is starting up")
        deadline = time.monotonic() + START_TIMEOUT
        while subprocess.run([str(bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)]).returncode:
            if time.monotonic() > deadline or self.procs[-1].poll() is not None:
                pytest.fail(f"PostgreSQL on port {port} never accepted sessions:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)

    def sql(self, server: str, statement: str, database: str = "postgres") -> list[list[str]]:
        port = self.primary_port if server == "primary" else self.replica_port
        out = _run([self.psql, "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", database,
                    "-X", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-c", statement])
        return [line.split("\t") for line in out.splitlines() if line]

    def create(self, databases: list[str], user: str, password: str) -> None:
        self.sql("primary", f"CREATE ROLE {user} LOGIN PASSWORD '{password}'")
        for database in databases:
            self.sql("primary", f"CREATE DATABASE {database} OWNER {user}")

    def rows_read_and_changed(self, server: str, database: str, table: str) -> tuple[int, int]:
        rows = self.sql(server, "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0), "
                        "n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_user_tables "
                        f"WHERE relname = '{table}'", database)
        return (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)

    def reads(self, server: str, database: str, table: str) -> int:
        """SELECTs from `table` in the server's statement log (its statistics lag by up to seconds)."""
        log = (self.root / f"{server}.log").read_text(errors="replace")
        return sum(1 for line in log.splitlines() if line.startswith(f"[{database}] ") and "SELECT" in line
                   and f"FROM {table} " in line + " ")


def start(engine: str) -> Pair:
    """A primary and its replica for `engine` (mysql: MariaDB; postgresql), in a fresh directory."""
    root = Path(tempfile.mkdtemp(prefix=f"opc-{engine}-"))
    root.chmod(0o755)
    pair: Pair = MariaDB(engine, root) if engine == "mysql" else PostgreSQL(engine, root)
    try:
        pair.boot()
    except BaseException:
        pair.stop()
        raise
    return pair
