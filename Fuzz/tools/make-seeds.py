#!/usr/bin/env python3
"""Writes the seed corpora under Fuzz/corpus/<target>/ (small, hand-shaped, committed).

Envelope seeds are signed with the harness's fixed test key (32 bytes of 0x07, NK3Fuzz.signingKey) over
"nk3-command-envelope-v2\\0" + SHA-256(payload), payloads in nk3's wire form version 2 (a header line of
canonical JSON -- sorted keys, dates as ms, an apply's files as names and sizes -- then the raw file
contents in name order; see Sources/Protocol/CommandPayload+Wire.swift), for
node "fuzz-node" around NK3Fuzz.now (1_700_000_000 s), so that seeds pass the signature check and reach
payload decoding. Re-run after changing the harness's key, node or clock: python3 Fuzz/tools/make-seeds.py
"""
import base64, json, os, shutil
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives import serialization, hashes

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "corpus")
KEY = Ed25519PrivateKey.from_private_bytes(bytes([7]) * 32)
PUB = KEY.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
h = hashes.Hash(hashes.SHA256()); h.update(PUB); KEY_ID = h.finalize()[:8].hex()
CONTEXT = b"nk3-command-envelope-v2\x00"
NOW_MS = 1_700_000_000_000

def canon(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

def payload(command, serial=11, node="fuzz-node", issued=NOW_MS - 10_000, expires=NOW_MS + 300_000):
    body = b""
    if command["kind"] == "apply":
        files = sorted((name.encode(), text.encode()) for name, text in command["apply"]["files"].items())
        body = b"".join(text for _, text in files)
        command = {"kind": "apply", "apply": dict(command["apply"], files=[{"name": n.decode(), "size": len(t)} for n, t in files])}
    header = canon({"version": 2, "node": node, "serial": serial, "issuedAt": issued, "expiresAt": expires, "command": command})
    return header + b"\n" + body

def envelope(payload_bytes, key=KEY, key_id=KEY_ID):
    h = hashes.Hash(hashes.SHA256()); h.update(payload_bytes)
    sig = key.sign(CONTEXT + h.finalize())
    return canon({"version": 2, "keyID": key_id, "payload": base64.b64encode(payload_bytes).decode(),
                  "signature": base64.b64encode(sig).decode()})

COMMANDS = {
    "apply": {"kind": "apply", "apply": {"files": {"configuration.nix": "{ ... }: { }\n", "hardware.nix": "{ }"},
                                         "action": "switch", "upgrade": False, "confirmTimeoutSeconds": 600}},
    "apply-upgrade": {"kind": "apply", "apply": {"files": {"configuration.nix": "{ }"}, "action": "boot", "upgrade": True,
                                                 "nixChannel": "https://nixos.org/channels/nixos-24.05", "confirmTimeoutSeconds": 60}},
    "confirm": {"kind": "confirm", "confirm": {"applySerial": 11}},
    "reboot": {"kind": "reboot", "reboot": {"reason": "kernel"}},
    "rollback": {"kind": "rollback", "rollback": {"reason": "unhealthy"}},
}

def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())

def main():
    if os.path.isdir(ROOT):
        shutil.rmtree(ROOT)
    payloads = {k: payload(v) for k, v in COMMANDS.items()}
    payloads["replayed"] = payload(COMMANDS["reboot"], serial=3)
    payloads["other-node"] = payload(COMMANDS["reboot"], node="node-b")
    payloads["expired"] = payload(COMMANDS["reboot"], issued=NOW_MS - 900_000, expires=NOW_MS - 600_000)
    payloads["bad-bundle"] = payload({"kind": "apply", "apply": {"files": {"../etc/passwd": "x"}, "action": "test",
                                                                  "upgrade": False, "confirmTimeoutSeconds": 5}})
    for name, p in payloads.items():
        write("payload", name + ".json", p)
        write("envelope", name + ".json", envelope(p))
    write("envelope", "bad-signature.json", envelope(payloads["reboot"], key=Ed25519PrivateKey.from_private_bytes(bytes([8]) * 32)))
    write("envelope", "unknown-key.json", envelope(payloads["reboot"], key_id="0000000000000000"))
    write("envelope", "not-json.txt", "{\"version\":2,")

    # agent-http: first byte picks the client certificate (0 operator, 1 reader, 2 none, 3 no role).
    def http(role, method, path, body=b"", extra=""):
        head = f"{method} {path} HTTP/1.1\r\nHost: fuzz-node\r\n{extra}Content-Length: {len(body)}\r\n\r\n".encode()
        return bytes([role]) + head + body
    write("agent-http", "status.http", http(1, "GET", "/v1/status"))
    write("agent-http", "files.http", http(0, "GET", "/v1/files"))
    write("agent-http", "operation.http", http(1, "GET", "/v1/operations/op%2D1?x=1&y=%41+b"))
    write("agent-http", "metrics.http", http(1, "GET", "/metrics"))
    write("agent-http", "submit.http", http(0, "POST", "/v1/envelopes", envelope(payloads["reboot"])))
    write("agent-http", "submit-apply.http", http(0, "POST", "/v1/envelopes", envelope(payloads["apply"])))
    write("agent-http", "submit-reader.http", http(1, "POST", "/v1/envelopes", envelope(payloads["reboot"])))
    write("agent-http", "submit-extra-key.http", http(0, "POST", "/v1/envelopes", b'{"version":2,"keyID":"x","payload":"","signature":"","more":1}'))
    write("agent-http", "no-cert.http", http(2, "GET", "/v1/status"))
    write("agent-http", "no-role.http", http(3, "GET", "/v1/status"))
    write("agent-http", "pipelined.http", http(1, "GET", "/v1/status")[0:] + http(1, "DELETE", "/v1/status")[1:] + http(1, "GET", "/nope")[1:])
    write("agent-http", "chunked.http", bytes([0]) + b"POST /v1/envelopes HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n2\r\n1}\r\n0\r\n\r\n")

    write("inventory", "seed.yaml", open(os.path.join(ROOT, "..", "..", "Tests", "CoordinatorTests", "Fixtures", "seed-inventory.yaml")).read())
    write("inventory", "small.yaml", """join_address: 10.0.0.1
join_token: secret
nix_channel: nixos-24.05
cluster_name: lab
agent_port: 7443
disruption_budget: 1
rollout_order: [n2, n1]
ceph: {enabled: true, namespace: rook-ceph}
timeouts: {drain: 5m, reboot: 900s, ready: 10m}
nodes:
  10.0.0.1: {hostname: n1, initiator: true}
  "fd00::2": {hostname: n2}
vars:
  ssh_keys: ["ssh-ed25519 AAAA x"]
""")
    write("inventory", "anchors.yaml", "a: &x {b: 1}\nnodes:\n  h1: *x\njoin_token: <<\n")

    write("kubeconfig", "k3s.yaml", """apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUIKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo=
    server: https://127.0.0.1:6443
  name: default
contexts:
- context:
    cluster: default
    user: default
    namespace: kube-system
  name: default
- context: {cluster: default, user: tok}
  name: other
current-context: default
users:
- name: default
  user:
    client-certificate-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUIKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo=
    client-key-data: LS0tLS1CRUdJTiBFQyBQUklWQVRFIEtFWS0tLS0tCk1IY0MKLS0tLS1FTkQgRUMgUFJJVkFURSBLRVktLS0tLQo=
- name: tok
  user: {token: abc, exec: null}
""")
    write("kubeconfig", "files.yaml", "clusters: [{name: c, cluster: {server: 'https://[::1]:6443', certificate-authority: ca.crt, insecure-skip-tls-verify: false}}]\n"
          "users: [{name: u, user: {client-certificate: a.crt, client-key: a.key}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n")

    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "labels": {"a": "b"}, "annotations": {"nk3.io/cordoned-by": "nk3"}, "resourceVersion": "12", "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"unschedulable": True, "taints": [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule", "timeAdded": "2024-01-01T00:00:00Z"}]},
            "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ok", "lastHeartbeatTime": "2024-01-01T00:00:00Z", "lastTransitionTime": "2024-01-01T00:00:00.123456Z"}],
                       "nodeInfo": {"bootID": "b", "kernelVersion": "6.6", "osImage": "NixOS", "kubeletVersion": "v1.30.1+k3s1"}}}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default", "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "ds", "uid": "u", "controller": True}], "deletionTimestamp": None},
           "spec": {"nodeName": "n1", "volumes": [{"name": "v", "emptyDir": {}}]}, "status": {"phase": "Running"}}
    ds = {"metadata": {"name": "ds", "namespace": "kube-system", "generation": 3}, "status": {"observedGeneration": 3, "desiredNumberScheduled": 3, "numberAvailable": 2, "numberReady": 2, "updatedNumberScheduled": 3}}
    dep = {"metadata": {"name": "d", "generation": 1}, "spec": {"replicas": 2, "selector": {"matchLabels": {"a": "b"}, "matchExpressions": [{"key": "k", "operator": "In", "values": ["v"]}]}},
           "status": {"availableReplicas": 1, "conditions": [{"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"}]}}
    ceph = {"metadata": {"name": "rook-ceph", "namespace": "rook-ceph"}, "status": {"phase": "Ready", "ceph": {"health": "HEALTH_WARN", "lastChecked": "2023-11-14T22:14:00Z", "details": {"MON_CLOCK_SKEW": {"severity": "HEALTH_WARN", "message": "skew"}}}}}
    lease = {"metadata": {"name": "nk3-rollout", "namespace": "kube-system", "resourceVersion": "5"}, "spec": {"holderIdentity": "me", "leaseDurationSeconds": 60, "acquireTime": "2024-01-01T00:00:00.000000Z", "renewTime": "2024-01-01T00:00:00.000000Z", "leaseTransitions": 1}}
    status = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "Cannot evict pod as it would violate the pod's disruption budget.", "reason": "TooManyRequests", "code": 429,
              "details": {"name": "p", "kind": "pods", "causes": [{"reason": "DisruptionBudget", "message": "The disruption budget pdb needs 1 healthy pods", "field": "x"}], "retryAfterSeconds": 5}}
    pdb = {"metadata": {"name": "pdb"}, "spec": {"minAvailable": "50%", "maxUnavailable": 1, "selector": {"matchLabels": {"a": "b"}}}, "status": {"disruptionsAllowed": 0, "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1}}
    models = [node, pod, ds, dep, ceph, lease, status, pdb, {"metadata": {"resourceVersion": "9", "continue": "abc"}, "items": [node]}, {"metadata": {}, "items": [pod]}, {"a": [1, 2.5, True, None, "x"], "b": {"c": -1e300}}]
    for i, m in enumerate(models):
        write("kube-models", f"model-{i:02d}.json", bytes([i]) + canon(m))
    for t, obj in [("ADDED", node), ("MODIFIED", pod), ("DELETED", ceph), ("BOOKMARK", {"kind": "Node", "metadata": {"resourceVersion": "77"}}), ("ERROR", {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old resource version"})]:
        write("kube-watch", f"{t.lower()}.json", canon({"type": t, "object": obj}))

    write("rebuild-output", "current.txt", """building the system configuration...
these 3 derivations will be built:
  /nix/store/aaa-etc.drv
  /nix/store/bbb-system.drv
  /nix/store/ccc-x.drv
these 12 paths will be fetched (3.20 MiB download, 15.01 MiB unpacked):
  /nix/store/ddd-foo
this derivation will be built:
  /nix/store/eee.drv
this path will be fetched (0.01 MiB download, 0.05 MiB unpacked):
  /nix/store/fff
activating the configuration...
""")
    write("rebuild-output", "nix23.txt", "these derivations will be built:\r\n  /nix/store/a.drv\r\n  /nix/store/b.drv\r\nthese paths will be fetched (1 MiB download):\n  /nix/store/c\nerror: something\n")

    write("agent-config", "minimal.json", canon({"nodeName": "n1", "tls": {"certFile": "/c", "keyFile": "/k", "caFile": "/ca"},
                                                  "signingPublicKeys": [base64.b64encode(PUB).decode()]}))
    write("agent-config", "full.json", canon({"nodeName": "n1", "listenAddress": "::", "port": 9443, "tls": {"certFile": "/c", "keyFile": "/k", "caFile": "/ca"},
                                               "signingPublicKeys": [base64.b64encode(PUB).decode()], "stateDir": "/var/lib/nk3-agent", "configDir": "/etc/nixos",
                                               "k3sUnit": "k3s", "kubeletHealthzURL": "http://127.0.0.1:10248/healthz", "confirmTimeoutSeconds": 600,
                                               "commands": {"nixosRebuild": "nixos-rebuild", "systemctl": "systemctl"}, "paths": {"uptime": "/proc/uptime"}}))

    status_obj = {"hostname": "n1", "kernel": "6.6.0", "nixosVersion": "24.05", "currentSystem": "/nix/store/x", "bootedSystem": "/nix/store/x",
                  "currentGeneration": 3, "bootedGeneration": 3, "profileGeneration": 3, "bootID": "b", "uptimeSeconds": 12, "configHash": "ab",
                  "files": {"configuration.nix": "ab"}, "lastAcceptedSerial": 4, "kubelet": {"unit": "k3s", "unitActive": True, "healthz": True}}
    write("agent-responses", "status.json", canon(status_obj))
    write("agent-responses", "receipt.json", canon({"serial": 4, "kind": "apply", "operationID": "op-4", "phase": "received", "message": "m"}))
    write("agent-responses", "files.json", canon({"files": {"configuration.nix": "{ }"}}))
    write("agent-responses", "error.json", canon({"code": "replayed_serial", "message": "serial 3 is not greater than 4"}))

if __name__ == "__main__":
    main()
