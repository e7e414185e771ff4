#!/usr/bin/env python3
"""Refuse any plaintext Kubernetes Secret: a Secret document with data or stringData that is not
SOPS-encrypted (SOPS adds a top-level "sops" key). Usage: check-secrets.py FILE...; exit 1 if any."""

import sys

import yaml


def plaintext_secrets(path):
    with open(path, encoding="utf-8") as handle:
        try:
            documents = list(yaml.safe_load_all(handle))
        except yaml.YAMLError:
            return []  # not YAML this checker can read; yamllint reports it
    found = []
    for document in documents:
        if (isinstance(document, dict) and document.get("kind") == "Secret" and "sops" not in document
                and (document.get("data") or document.get("stringData"))):
            found.append((document.get("metadata") or {}).get("name", "<unnamed>"))
    return found


def main(paths):
    failed = False
    for path in paths:
        for name in plaintext_secrets(path):
            print(f"{path}: Secret {name} is plaintext; encrypt it with SOPS or use an ExternalSecret")
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
