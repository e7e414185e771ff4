"""The tool builds opc runs: what `opc tools` knows about each, and how a set's programs are
named when one `go build` writes them all to a directory."""

from __future__ import annotations

import subprocess

from opc import tools


def test_command_names_follow_go_build():
    """`go build -o DIR/` names a program after its package's last element, skipping a major
    version suffix; every program of every set gets the name opc expects."""
    assert tools._command_name("go.etcd.io/etcd/server/v3") == "server"
    assert tools._command_name("github.com/getsops/sops/v3/cmd/sops") == "sops"
    assert tools._command_name("github.com/fluxcd/source-controller") == "source-controller"
    assert tools._command_name("k8s.io/kubernetes/cmd/kube-apiserver") == "kube-apiserver"
    for toolset in tools.SETS.values():
        groups: dict[str, list[str]] = {}
        for _, package, ldflags in toolset.programs:
            groups.setdefault(ldflags, []).append(tools._command_name(package))
        assert all(len(names) == len(set(names)) for names in groups.values()), toolset.name


def test_every_program_of_a_set_is_built_and_reports_its_version():
    """Each set's programs come out of the cache under their own names and run."""
    for name, tool in tools.TOOLS.items():
        if tool.toolset is None or not tool.version_args:
            continue
        path = tools.find(name)
        proc = subprocess.run([path, *tool.version_args], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0 and tool.version.lstrip("v").split("-")[0] in proc.stdout + proc.stderr, (
            name, proc.stdout, proc.stderr)
