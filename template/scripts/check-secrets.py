#!/usr/bin/env python3
"""Refuse any plaintext Kubernetes Secret, any SOPS file that is not fully encrypted and any
sealed file that is not purely a SealedSecret.

A Secret document with data or stringData needs SOPS's top-level "sops" metadata with a MAC, and
every value it holds must be ciphertext (ENC[...]); a *.sops.yaml file must be such a document.
A *.sealed.yaml file holds SealedSecrets only, every value in encryptedData and none in its
template (whose data the controller would copy into the Secret as it is).
Usage: check-secrets.py FILE...; exit 1 if any file fails."""

import sys

import yaml


def _encrypted(document):
    sops = document.get("sops")
    values = list((document.get("data") or {}).values()) + list((document.get("stringData") or {}).values())
    return (isinstance(sops, dict) and bool(sops.get("mac"))
            and all(isinstance(v, str) and v.startswith("ENC[") for v in values))


def _sealed(document):
    spec = document.get("spec") or {}
    template = spec.get("template") or {}
    return (document.get("kind") == "SealedSecret" and isinstance(spec.get("encryptedData"), dict)
            and bool(spec["encryptedData"]) and not template.get("data") and not template.get("stringData"))


def problems(path):
    with open(path, encoding="utf-8") as handle:
        try:
            documents = [d for d in yaml.safe_load_all(handle) if d is not None]
        except yaml.YAMLError:
            return []  # not YAML this checker can read; yamllint reports it
    found = []
    for document in documents:
        if not isinstance(document, dict):
            continue
        name = (document.get("metadata") or {}).get("name", "<unnamed>")
        if document.get("kind") == "Secret" and (document.get("data") or document.get("stringData")) \
                and not _encrypted(document):
            found.append(f"Secret {name} is not encrypted (every value SOPS ciphertext): "
                         "use `opc secrets set`")
        elif path.endswith(".sops.yaml") and not _encrypted(document):
            found.append(f"{document.get('kind', 'document')} {name} in a .sops.yaml file is not SOPS-encrypted")
        elif path.endswith(".sealed.yaml") and not _sealed(document):
            found.append(f"{document.get('kind', 'document')} {name} in a .sealed.yaml file is not a SealedSecret "
                         "with only encryptedData: use `opc secrets set`")
    return found


def main(paths):
    failed = False
    for path in paths:
        for problem in problems(path):
            print(f"{path}: {problem}")
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
