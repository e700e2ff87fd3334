#!/usr/bin/env bash
# Validates the Kubernetes manifests in deploy/kubernetes without a cluster: renders each overlay with
# `kubectl kustomize`, validates every rendered object against the Kubernetes API schema (kubernetes-validate
# --strict, KUBERNETES_VERSION, default 1.30.0: the oldest version with the preStop sleep action the Deployments use),
# checks that every Secret and ConfigMap a pod refers to is rendered with the keys it asks for, and runs checkov with
# zero failed checks allowed (the checks skipped on purpose carry their reason in a checkov.io/skipN annotation).
#
# Installs what is missing: kubernetes-validate and checkov from PyPI, kubectl from Debian (kubernetes-client).
# Secret files that are absent are taken from their *.example templates, in a temporary copy of the tree: nothing is
# written into the repository.
#
#   scripts/validate-kubernetes.sh
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
source_tree="$repo/deploy/kubernetes"
overlays=(local production)
kubernetes_version="${KUBERNETES_VERSION:-1.30.0}"

log() { printf '==> %s\n' "$*"; }

pip_install() {
    python3 -m pip install -q "$@" 2>/dev/null || python3 -m pip install -q --break-system-packages "$@"
}

# --- tools -------------------------------------------------------------------------------------------------------
if ! command -v kubectl >/dev/null; then
    log "installing kubectl (Debian kubernetes-client)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubernetes-client >/dev/null
fi
for tool in kubernetes-validate checkov; do
    if ! command -v "$tool" >/dev/null; then
        log "installing $tool (PyPI)"
        pip_install "$tool"
    fi
done
python3 -c 'import yaml' 2>/dev/null || pip_install pyyaml
# The overlays use kustomize's `labels` and `replicas` fields and regex patch targets: kustomize 4.5 or later, as in
# kubectl 1.24+. Debian 12's own kubernetes-client (1.20, kustomize 2) cannot render them.
kustomize_version="$(kubectl version --client 2>/dev/null | sed -n 's/^Kustomize Version: v//p')"
if [[ -z "$kustomize_version" || "${kustomize_version%%.*}" -lt 4 ]]; then
    echo "kubectl's kustomize (${kustomize_version:-unknown}) is too old for these overlays: use kubectl 1.24 or later" >&2
    exit 1
fi
log "kubectl $(kubectl version --client 2>/dev/null | sed -n 's/^Client Version: //p'), kustomize" \
    "$(kubectl version --client 2>/dev/null | sed -n 's/^Kustomize Version: //p'), kubernetes-validate" \
    "$(kubernetes-validate --version), checkov $(checkov --version)"

# --- a copy of the tree with every secret file present -------------------------------------------------------------
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp -R "$source_tree" "$work/kubernetes"
while IFS= read -r -d '' example; do
    real="${example%.example}"
    if [[ ! -e "$real" ]]; then
        cp "$example" "$real"
        echo "    ${real#"$work"/kubernetes/}: from its .example"
    fi
done < <(find "$work/kubernetes" -name '*.example' -print0)
mkdir -p "$work/rendered"

# --- the checks ------------------------------------------------------------------------------------------------------
# references FILE: every Secret and ConfigMap a pod template names is in FILE, with each key asked for (optional ones
# excepted); every SERVICE_SECRET is the one SERVICE_CLIENTS gives its service.
references() {
    python3 - "$1" <<'PY'
import base64, sys, yaml

docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
data = {}
for d in docs:
    if d["kind"] in ("Secret", "ConfigMap"):
        values = {k: base64.b64decode(v).decode() for k, v in (d.get("data") or {}).items()} if d["kind"] == "Secret" else dict(d.get("data") or {})
        data[(d["kind"], d["metadata"]["name"])] = values
problems = []
secrets_of = {}

def need(kind, name, key, optional, where):
    if (kind, name) not in data:
        if not optional:
            problems.append(f"{where}: {kind} {name} is not rendered")
    elif key is not None and key not in data[(kind, name)] and not optional:
        problems.append(f"{where}: {kind} {name} has no key {key}")

for d in docs:
    template = (d.get("spec") or {}).get("template")
    if not template:
        continue
    spec = template["spec"]
    for container in spec.get("initContainers", []) + spec.get("containers", []):
        where = f"{d['kind']} {d['metadata']['name']}, container {container['name']}"
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                need("ConfigMap", source["configMapRef"]["name"], None, source["configMapRef"].get("optional", False), where)
            if "secretRef" in source:
                need("Secret", source["secretRef"]["name"], None, source["secretRef"].get("optional", False), where)
        for variable in container.get("env", []):
            ref = (variable.get("valueFrom") or {})
            if "secretKeyRef" in ref:
                r = ref["secretKeyRef"]
                need("Secret", r["name"], r["key"], r.get("optional", False), where)
                if variable["name"] == "SERVICE_SECRET" and ("Secret", r["name"]) in data:
                    secrets_of[d["metadata"]["name"]] = data[("Secret", r["name"])].get(r["key"])
            if "configMapKeyRef" in ref:
                r = ref["configMapKeyRef"]
                need("ConfigMap", r["name"], r["key"], r.get("optional", False), where)
    for volume in spec.get("volumes", []):
        where = f"{d['kind']} {d['metadata']['name']}, volume {volume['name']}"
        if "secret" in volume:
            need("Secret", volume["secret"]["secretName"], None, volume["secret"].get("optional", False), where)
        if "configMap" in volume:
            need("ConfigMap", volume["configMap"]["name"], None, volume["configMap"].get("optional", False), where)

clients = {}
for (kind, name), values in data.items():
    if "SERVICE_CLIENTS" in values:
        for pair in values["SERVICE_CLIENTS"].split(","):
            service, _, secret = pair.partition("=")
            clients[service.strip()] = secret.strip()
for service, secret in secrets_of.items():
    if clients.get(service) != secret:
        problems.append(f"Deployment {service}: its SERVICE_SECRET is not the one SERVICE_CLIENTS gives it")

for problem in problems:
    print("    " + problem)
if not problems:
    print(f"    {sum(1 for d in docs if (d.get('spec') or {}).get('template'))} pod templates, every reference resolved")
sys.exit(1 if problems else 0)
PY
}

# checkov_summary JSON: the counts, and each skipped check with its reason and how many objects skip it.
checkov_summary() {
    python3 - "$1" <<'PY'
import json, sys
from collections import defaultdict

report = json.load(open(sys.argv[1]))
reports = report if isinstance(report, list) else [report]
summary = defaultdict(int)
skipped = defaultdict(list)
for r in reports:
    for key in ("passed", "failed", "skipped"):
        summary[key] += r.get("summary", {}).get(key, 0)
    for check in r.get("results", {}).get("skipped_checks", []):
        skipped[(check["check_id"], check.get("check_result", {}).get("suppress_comment", ""))].append(check["resource"])
print(f"    checkov: {summary['passed']} passed, {summary['failed']} failed, {summary['skipped']} skipped")
for (check, reason), resources in sorted(skipped.items()):
    print(f"      skipped {check} on {len(resources)} ({', '.join(sorted(resources))}):\n        {reason}")
PY
}

status=0
declare -A objects
for overlay in "${overlays[@]}"; do
    rendered="$work/rendered/$overlay.yaml"
    log "$overlay: kubectl kustomize"
    kubectl kustomize "$work/kubernetes/overlays/$overlay" >"$rendered"
    objects[$overlay]="$(grep -c '^kind:' "$rendered")"
    echo "    ${objects[$overlay]} objects: $(sed -n 's/^kind: //p' "$rendered" | sort | uniq -c | awk '{printf "%s%s %s", sep, $1, $2; sep=", "}')"

    log "$overlay: kubernetes-validate --strict (Kubernetes $kubernetes_version)"
    if kubernetes-validate --kubernetes-version "$kubernetes_version" --strict --quiet "$rendered"; then
        echo "    all ${objects[$overlay]} objects valid"
    else
        status=1
    fi

    log "$overlay: references to Secrets and ConfigMaps"
    references "$rendered" || status=1

    log "$overlay: checkov"
    # --skip-download: offline, no guidelines or severities fetched from the vendor's platform.
    if ! checkov -f "$rendered" --framework kubernetes --quiet --compact --skip-download; then
        status=1
    fi
    checkov -f "$rendered" --framework kubernetes --skip-download --output json >"$work/rendered/$overlay.checkov.json" || true
    checkov_summary "$work/rendered/$overlay.checkov.json"
done

# The optional ServiceMonitor component, on the production overlay. The ServiceMonitor is a custom resource:
# kubernetes-validate has no schema for it and says so; the other objects are validated as above.
log "components/servicemonitor (on production): kubectl kustomize, kubernetes-validate"
mkdir -p "$work/kubernetes/overlays/production-servicemonitor"
cat >"$work/kubernetes/overlays/production-servicemonitor/kustomization.yaml" <<'EOF'
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: shop
resources: [../production]
components: [../../components/servicemonitor]
EOF
kubectl kustomize "$work/kubernetes/overlays/production-servicemonitor" >"$work/rendered/production-servicemonitor.yaml"
if grep -q '^kind: ServiceMonitor' "$work/rendered/production-servicemonitor.yaml" &&
    kubernetes-validate --kubernetes-version "$kubernetes_version" --strict --quiet \
        "$work/rendered/production-servicemonitor.yaml"; then
    echo "    rendered with its ServiceMonitor"
else
    status=1
fi

if [[ $status -ne 0 ]]; then
    log "FAILED"
    exit 1
fi
log "OK: $(for overlay in "${overlays[@]}"; do printf '%s %s objects; ' "$overlay" "${objects[$overlay]}"; done)valid for Kubernetes $kubernetes_version, no failed checkov check"
