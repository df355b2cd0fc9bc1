#!/usr/bin/env python3
"""Prints the `discount-policies` ConfigMap for a set of built policies.

Each policy is its component (<name>.wasm, in binaryData) and its settings
(<name>.toml, in data). Apply the output to publish a promotion: every replica's
kubelet swaps the volume's `..data` symlink and every host reloads.

    deploy/k8s/policies-configmap.py target/policies cart-threshold loyalty-tier \\
        | kubectl apply -f -

A ConfigMap holds at most 1 MiB: larger components (the JavaScript and Python
policies) need another volume (docs/deployment.md).
"""
import base64
import json
import pathlib
import sys

LIMIT = 1024 * 1024


def configmap(directory: pathlib.Path, names: list[str]) -> dict:
    data, binary, size = {}, {}, 0
    for name in names:
        wasm = (directory / f"{name}.wasm").read_bytes()
        toml = (directory / f"{name}.toml").read_text()
        binary[f"{name}.wasm"] = base64.b64encode(wasm).decode()
        data[f"{name}.toml"] = toml
        size += len(wasm) + len(toml.encode())
    if size > LIMIT:
        raise SystemExit(f"{size} bytes of policies: over the 1 MiB ConfigMap limit")
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "discount-policies",
            "labels": {"app.kubernetes.io/name": "discount-host"},
        },
        "data": data,
        "binaryData": binary,
    }


def main() -> None:
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    # JSON is YAML: kubectl reads it as is.
    print(json.dumps(configmap(pathlib.Path(sys.argv[1]), sys.argv[2:]), indent=2))


if __name__ == "__main__":
    main()
