#!/usr/bin/env python3
"""Validates the Kubernetes manifests offline: each document against the
Kubernetes JSON schemas shipped in the `kubernetes-validate` package (strict:
unknown fields fail), then the references between them. Usage:

    validate.py MANIFEST.yaml... [--host-config-out FILE]

Prints one line per check and `k8s: N passed, M failed`.
"""
import argparse
import sys
import tomllib

import kubernetes_validate
import yaml

K8S_VERSION = "1.33.0"

passed = failed = 0


def quantity_bytes(quantity):
    """A Kubernetes quantity ("512Mi", "1G", "1000") in bytes; None when absent."""
    if quantity is None:
        return None
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    for suffix, factor in units.items():
        if str(quantity).endswith(suffix):
            return int(float(str(quantity)[: -len(suffix)]) * factor)
    return int(quantity)


def check(name: str, ok: bool, detail: str = "") -> None:
    global passed, failed
    if ok:
        passed += 1
        print(f"ok   {name}")
    else:
        failed += 1
        print(f"FAIL {name} {detail}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("files", nargs="+")
    parser.add_argument("--host-config-out")
    args = parser.parse_args()

    docs = []
    for path in args.files:
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if doc:
                    docs.append((path, doc))
    for path, doc in docs:
        name = f"{path}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
            check(f"schema {name}", True)
        except kubernetes_validate.ValidationError as e:
            check(f"schema {name}", False, str(e.message))
        except Exception as e:  # noqa: BLE001 - unknown kinds, bad versions
            check(f"schema {name}", False, repr(e))

    by_kind: dict[str, dict[str, dict]] = {}
    for _, doc in docs:
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc

    deployment = by_kind.get("Deployment", {}).get("discount-host")
    check("a discount-host Deployment", deployment is not None)
    if deployment is None:
        return 1
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    container = pod["containers"][0]
    check("several replicas", spec.get("replicas", 1) >= 2, str(spec.get("replicas")))
    check(
        "selector matches the pod labels",
        all(labels.get(k) == v for k, v in spec["selector"]["matchLabels"].items()),
    )
    probes = {p: container.get(p, {}).get("httpGet", {}).get("path") for p in ("readinessProbe", "livenessProbe", "startupProbe")}
    check("readiness probe on /readyz", probes["readinessProbe"] == "/readyz", str(probes))
    check("liveness probe on /livez", probes["livenessProbe"] == "/livez", str(probes))
    port_names = {p["name"] for p in container.get("ports", [])}
    for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
        port = container.get(kind, {}).get("httpGet", {}).get("port")
        check(f"{kind} port is a container port", port in port_names or isinstance(port, int), str(port))

    secrets = by_kind.get("Secret", {})
    env = {e["name"]: e for e in container.get("env", [])}
    for var in ("STRIPE_SECRET_KEY", "DISCOUNT_HOST_ADMIN_TOKEN"):
        ref = env.get(var, {}).get("valueFrom", {}).get("secretKeyRef")
        ok = ref is not None and ref["name"] in secrets and ref["key"] in secrets[ref["name"]].get("stringData", {})
        check(f"{var} comes from a Secret", ok, str(ref))

    configmaps = by_kind.get("ConfigMap", {})
    mounts = {m["name"]: m for m in container.get("volumeMounts", [])}
    for volume in pod.get("volumes", []):
        cm = volume.get("configMap")
        if cm:
            check(f"volume {volume['name']} names a ConfigMap here", cm["name"] in configmaps, cm["name"])
        mount = mounts.get(volume["name"], {})
        check(f"volume {volume['name']} is mounted without subPath (updates reach it)", mount and "subPath" not in mount)

    policies = configmaps.get("discount-policies")
    if policies is not None:
        wasm = [k for k in policies.get("binaryData", {}) if k.endswith(".wasm")]
        tomls = set(policies.get("data", {}))
        check("policies ConfigMap holds components", len(wasm) >= 1, str(wasm))
        check("every component has its settings", all(w[:-5] + ".toml" in tomls for w in wasm))

    host_config = configmaps.get("discount-host-config", {}).get("data", {}).get("host.toml")
    check("host.toml in the config ConfigMap", host_config is not None)
    if host_config is not None:
        config = tomllib.loads(host_config)
        policy_mount = mounts.get("policies", {}).get("mountPath")
        check("policy_dir is the policies mount", config.get("policy_dir") == policy_mount, f"{config.get('policy_dir')} vs {policy_mount}")
        listen_port = int(config.get("listen", ":0").rsplit(":", 1)[1])
        check("the host listens on the container port", listen_port in [p["containerPort"] for p in container["ports"]])
        check("audit records go to stdout", config.get("audit", {}).get("sink") == "stdout")
        cache_mount = mounts.get("cache", {}).get("mountPath")
        check("cache_dir is the cache mount", config.get("cache_dir") == cache_mount, f"{config.get('cache_dir')} vs {cache_mount}")
        cache_volume = next((v for v in pod.get("volumes", []) if v["name"] == "cache"), {})
        size_limit = quantity_bytes(cache_volume.get("emptyDir", {}).get("sizeLimit"))
        # Set here, not left to the host's default (4 GiB), which no small volume fits.
        cache_max = config.get("cache_max_bytes")
        check(
            "the cache's cap fits its volume (a full emptyDir evicts the pod)",
            size_limit is None or (cache_max is not None and 0 < cache_max < size_limit),
            f"cache_max_bytes {cache_max} vs sizeLimit {size_limit}",
        )
        if args.host_config_out:
            with open(args.host_config_out, "w") as f:
                f.write(host_config)

    service = by_kind.get("Service", {}).get("discount-host")
    check("a Service selects the pods", service is not None and all(labels.get(k) == v for k, v in service["spec"]["selector"].items()))
    if service is not None:
        check("the Service targets the named port", all(p.get("targetPort") in port_names for p in service["spec"]["ports"]))

    print(f"k8s: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
