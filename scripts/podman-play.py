#!/usr/bin/env python3
"""Runs the Kubernetes overlay `local`'s workloads with `podman kube play` (used by scripts/test-deploy.sh):

    podman-play.py RENDERED.yaml WORKDIR IMAGE=REPLACEMENT...

RENDERED.yaml is `kubectl kustomize deploy/kubernetes/overlays/local` with real secrets; each IMAGE=REPLACEMENT runs
REPLACEMENT where the manifests name IMAGE (the locally built shop image, the Debian stand-ins for PostgreSQL and
Redis). The workloads then run as pods on one podman network, where each pod answers to its workload's name as the
ClusterIP Service of that name would; the guide's flow goes through the gateway pod, and everything is removed at the
end.

podman (4.3, Debian 12) plays Pods, Deployments and PersistentVolumeClaims, with ConfigMaps given beside them and
Secrets from its own secret store. What it cannot do is translated here, and said:
  - StatefulSet: played as a pod of its template, its volume claim templates as directories (below);
  - Deployment: one pod per replica, named after the Deployment (the first) so that its Service's name reaches it;
  - initContainers: podman 4.3 restarts them with the pod's restart policy, so each workload's init containers run
    first as a pod of their own that must exit 0 (the migrations), then the workload without them;
  - volumes: podman applies no fsGroup, so emptyDirs and volume claims are directories made here and owned by the pod's
    runAsUser/fsGroup, as the kubelet would make them writable; a Secret volume (podman 4.3 crashes on one) is a
    read-only directory of the Secret's files;
  - ports: podman would publish every containerPort on the host, so they are left out; pods are reached on their
    own addresses on the network, as in a cluster;
  - probes: podman turns them into health checks that run only under systemd and through curl, which the image does
    not have; instead this script asks every pod's /health/ready itself;
  - Service, Ingress, NetworkPolicy, PodDisruptionBudget, HorizontalPodAutoscaler, ServiceAccount, Namespace: not
    played (podman has no such objects); they are validated by scripts/validate-kubernetes.sh.
"""
import base64
import copy
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import yaml

PLAYED = {"Deployment", "StatefulSet"}
GIVEN = {"ConfigMap", "Secret"}


def podman(*args, check=True, capture=True):
    result = subprocess.run(["podman", *args], capture_output=capture, text=True)
    if check and result.returncode != 0:
        raise SystemExit("FAILED: podman %s: %s" % (" ".join(args), (result.stderr or result.stdout).strip()[-2000:]))
    return result.stdout if capture else ""


def expect(condition, message):
    if not condition:
        raise SystemExit("FAILED: " + message)


class Play:
    def __init__(self, docs, work, images):
        self.docs = docs
        self.work = work
        self.images = images
        self.network = "shop-play-%d" % os.getpid()
        self.pods = []
        self.secrets = []
        self.secret_data = {}
        for doc in docs:
            if doc["kind"] == "Secret":
                self.secret_data[doc["metadata"]["name"]] = {k: base64.b64decode(v) for k, v in (doc.get("data") or {}).items()}

    # --- translation -------------------------------------------------------------------------------------------------
    def pod_spec(self, name, template, volume_claims):
        spec = copy.deepcopy(template["spec"])
        security = spec.get("securityContext") or {}
        owner = (security.get("runAsUser", 0), security.get("fsGroup", security.get("runAsGroup", 0)))
        volumes = []
        for volume in spec.get("volumes") or []:
            volumes.append(self.volume(name, volume, owner))
        for claim in volume_claims:
            volumes.append(self.volume(name, {"name": claim["metadata"]["name"], "emptyDir": {}}, owner))
        spec["volumes"] = volumes
        for container in spec.get("containers", []) + spec.get("initContainers", []):
            container["image"] = self.images.get(container["image"], container["image"])
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                container.pop(probe, None)
            container.pop("lifecycle", None)
            # podman publishes each containerPort on the host (two gateways would collide); pods are reached on
            # their own addresses instead, as in a cluster.
            container.pop("ports", None)
        return spec

    def volume(self, pod, volume, owner):
        path = os.path.join(self.work, "volumes", pod, volume["name"])
        os.makedirs(path, exist_ok=True)
        if "secret" in volume:
            mode = volume["secret"].get("defaultMode", 0o644)
            for key, value in self.secret_data[volume["secret"]["secretName"]].items():
                file = os.path.join(path, key)
                with open(file, "wb") as out:
                    out.write(value)
                os.chown(file, 0, owner[1])
                os.chmod(file, mode)
            os.chmod(path, 0o755)
        elif "emptyDir" in volume or "persistentVolumeClaim" in volume:
            os.chown(path, owner[0], owner[1])
            os.chmod(path, 0o2770)
        else:
            raise SystemExit("FAILED: volume %s of %s is of a kind this script does not translate" % (volume["name"], pod))
        return {"name": volume["name"], "hostPath": {"path": path, "type": "Directory"}}

    def pods_of(self, doc):
        """(name, init pod or None, pod) for each replica of a workload."""
        name = doc["metadata"]["name"]
        template = doc["spec"]["template"]
        replicas = doc["spec"].get("replicas", 1)
        claims = doc["spec"].get("volumeClaimTemplates", [])
        result = []
        for index in range(replicas):
            pod_name = name if index == 0 else "%s-%d" % (name, index + 1)
            spec = self.pod_spec(pod_name, template, claims)
            init = None
            if spec.get("initContainers"):
                init_spec = copy.deepcopy(spec)
                init_spec["containers"] = init_spec.pop("initContainers")
                init_spec["restartPolicy"] = "Never"
                init = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod_name + "-init"}, "spec": init_spec}
                spec.pop("initContainers")
            spec["restartPolicy"] = "Always"
            labels = dict((template.get("metadata") or {}).get("labels") or {})
            pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod_name, "labels": labels}, "spec": spec}
            result.append((pod_name, init, pod))
        return result

    # --- running -----------------------------------------------------------------------------------------------------
    def play(self, pod):
        path = os.path.join(self.work, pod["metadata"]["name"] + ".yaml")
        with open(path, "w") as out:
            yaml.safe_dump(pod, out)
        # Recorded first: a play that fails halfway leaves a pod to remove too.
        self.pods.append(pod["metadata"]["name"])
        podman("kube", "play", "--network", self.network, "--configmap", self.configmaps, path)

    def address(self, pod):
        info = json.loads(podman("pod", "inspect", pod))
        info = info[0] if isinstance(info, list) else info
        infra = json.loads(podman("inspect", info["InfraContainerID"]))[0]
        return infra["NetworkSettings"]["Networks"][self.network]["IPAddress"]

    def container(self, pod, name):
        return "%s-%s" % (pod, name)

    def wait_exited(self, pod, containers, timeout=180):
        deadline = time.monotonic() + timeout
        for name in containers:
            while True:
                state = json.loads(podman("inspect", self.container(pod, name)))[0]["State"]
                if state["Status"] == "exited":
                    logs = podman("logs", self.container(pod, name), check=False)
                    expect(state["ExitCode"] == 0, "%s/%s exited %s: %s" % (pod, name, state["ExitCode"], logs[-1500:]))
                    break
                expect(time.monotonic() < deadline, "%s/%s still %s after %d s" % (pod, name, state["Status"], timeout))
                time.sleep(0.5)

    def wait_ready(self, pod, port, timeout=180):
        url = "http://%s:%d/health/ready" % (self.address(pod), port)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(url, timeout=3) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                logs = podman("logs", "--tail", "30", self.container(pod, "shop"), check=False)
                raise SystemExit("FAILED: %s not ready at %s within %d s:\n%s" % (pod, url, timeout, logs))
            time.sleep(0.5)

    def wait_port(self, pod, port, timeout=180):
        import socket
        address = self.address(pod)
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection((address, port), timeout=2).close()
                return
            except OSError:
                expect(time.monotonic() < deadline, "%s does not accept connections on %d" % (pod, port))
                time.sleep(0.5)

    def run(self):
        kinds = {}
        for doc in self.docs:
            kinds[doc["kind"]] = kinds.get(doc["kind"], 0) + 1
        skipped = sorted(k for k in kinds if k not in PLAYED | GIVEN)
        podman("network", "create", self.network)
        configmaps = [d for d in self.docs if d["kind"] == "ConfigMap"]
        self.configmaps = os.path.join(self.work, "configmaps.yaml")
        with open(self.configmaps, "w") as out:
            yaml.safe_dump_all(configmaps, out)
        for name, data in self.secret_data.items():
            payload = json.dumps({k: base64.b64encode(v).decode() for k, v in data.items()})
            subprocess.run(["podman", "secret", "create", name, "-"], input=payload, text=True, check=True, capture_output=True)
            self.secrets.append(name)

        workloads = [d for d in self.docs if d["kind"] in PLAYED]
        datastores = [d for d in workloads if d["kind"] == "StatefulSet"]
        services = [d for d in workloads if d["kind"] != "StatefulSet"]
        for doc in datastores:
            for name, init, pod in self.pods_of(doc):
                expect(init is None, "a datastore with init containers")
                self.play(pod)
        for doc in datastores:
            port = doc["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]  # from the manifest
            self.wait_port(doc["metadata"]["name"], port)
        print("    datastores up: %s" % ", ".join(d["metadata"]["name"] for d in datastores))

        migrated = []
        for doc in services:
            for name, init, pod in self.pods_of(doc):
                if init:
                    self.play(init)
                    self.wait_exited(init["metadata"]["name"], [c["name"] for c in init["spec"]["containers"]])
                    migrated.append(name)
                self.play(pod)
        print("    init containers (migrations) exited 0 for: %s" % ", ".join(migrated))
        ports = {}
        for doc in services:
            container = doc["spec"]["template"]["spec"]["containers"][0]
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            for name, _, _ in self.pods_of(doc):
                # The port readiness is asked on: the gateway's internal port, where its health is in detail.
                ports[name] = int(env.get("GATEWAY_INTERNAL_PORT") or env["PORT"])
                if doc["metadata"]["name"] == "gateway":
                    self.gateway_ports = (int(env["PORT"]), int(env["GATEWAY_INTERNAL_PORT"]))
        for name, port in ports.items():
            self.wait_ready(name, port)
        print("    %d pods ready (/health/ready): %s" % (len(ports), ", ".join(sorted(ports))))

        gateway = self.container("gateway", "shop")
        config = json.loads(podman("inspect", gateway))[0]
        host = config["HostConfig"]
        expect(config["Config"]["User"].startswith("10001"), "the gateway runs as %r" % config["Config"]["User"])
        expect(host["ReadonlyRootfs"], "the gateway's root filesystem is writable")
        expect(not host.get("Privileged"), "the gateway is privileged")
        # The process itself holds no capability at all (effective, permitted, bounding).
        status = open("/proc/%d/status" % config["State"]["Pid"]).read()
        capabilities = {line.split(":")[0]: line.split()[1] for line in status.splitlines() if line.startswith("Cap")}
        expect(all(int(capabilities[k], 16) == 0 for k in ("CapEff", "CapPrm", "CapBnd")), "the gateway holds capabilities: %s" % capabilities)
        expect("NoNewPrivs:\t1" in status, "the gateway may gain privileges (no_new_privs is off)")
        print("    gateway container: uid %s, read-only root, no capabilities (effective, permitted, bounding), no new privileges"
              % config["Config"]["User"])
        print("    skipped kinds (not objects podman plays; validated by validate-kubernetes.sh): %s"
              % ", ".join("%s (%d)" % (k, kinds[k]) for k in skipped))
        public, internal = self.gateway_ports
        return "http://%s:%d" % (self.address("gateway"), public), "http://%s:%d" % (self.address("gateway"), internal)

    def cleanup(self):
        for pod in reversed(self.pods):
            podman("pod", "rm", "-f", "-t", "10", pod, check=False)
        for secret in self.secrets:
            podman("secret", "rm", secret, check=False)
        podman("network", "rm", "-f", self.network, check=False)


def main():
    rendered, work = sys.argv[1], sys.argv[2]
    images = dict(pair.split("=", 1) for pair in sys.argv[3:])
    docs = [d for d in yaml.safe_load_all(open(rendered)) if d]
    play = Play(docs, work, images)
    try:
        gateway, internal = play.run()
        # The Secret's generated name has a hash suffix.
        admin_password = base64.b64decode(
            next(d for d in docs if d["kind"] == "Secret" and "ADMIN_PASSWORD" in (d.get("data") or {}))["data"]["ADMIN_PASSWORD"]).decode()
        flow = os.path.join(os.path.dirname(os.path.abspath(__file__)), "deploy-flow.py")
        subprocess.run([sys.executable, flow, gateway, admin_password], check=True)
        for path, expected in (("/health", 404), ("/metrics", 404)):
            try:
                status = urllib.request.urlopen(gateway + path, timeout=5).status
            except urllib.error.HTTPError as error:
                status = error.code
            expect(status == expected, "the gateway's public port answered %d for %s" % (status, path))
        with urllib.request.urlopen(internal + "/metrics", timeout=5) as response:
            expect(response.status == 200, "no /metrics on the internal port")
        print("    the guide's flow through the gateway pod; /health and /metrics only on its internal port")
    finally:
        play.cleanup()


if __name__ == "__main__":
    main()
