import Foundation
import NK3Kube

/// Real-shaped API JSON (as `kubectl get … -o json` prints it; shapes from docs/UPSTREAM.md#nodes, #rollout-status,
/// #rook-cephcluster) for the pure gate rules. Kept inline so the fixtures sit next to the tests that read them.
enum GateFixtures {
    static func decode<T: Decodable>(_ json: String, as type: T.Type = T.self) throws -> T {
        try JSONDecoder().decode(T.self, from: Data(json.utf8))
    }

    /// docs/UPSTREAM.md#nodes: one Ready node, one NotReady (KubeletNotReady), one whose heartbeats stopped.
    static let nodeList = #"""
        {"kind":"NodeList","apiVersion":"v1","metadata":{"resourceVersion":"48300"},"items":[
         {"kind":"Node","apiVersion":"v1",
          "metadata":{"name":"n1","uid":"5f0c","resourceVersion":"48213",
           "labels":{"kubernetes.io/hostname":"n1","node-role.kubernetes.io/control-plane":"true","node-role.kubernetes.io/master":"true","node-role.kubernetes.io/etcd":"true","node.kubernetes.io/instance-type":"k3s"},
           "annotations":{"k3s.io/node-args":"[\"server\"]","k3s.io/internal-ip":"10.0.0.11"},
           "managedFields":[{"manager":"k3s","operation":"Update"}]},
          "spec":{"podCIDR":"10.42.0.0/24","providerID":"k3s://n1"},
          "status":{"capacity":{"cpu":"4","memory":"16318904Ki"},
           "conditions":[
            {"type":"MemoryPressure","status":"False","reason":"KubeletHasSufficientMemory","message":"kubelet has sufficient memory available","lastHeartbeatTime":"2024-05-01T12:00:00Z","lastTransitionTime":"2024-05-01T11:00:00Z"},
            {"type":"Ready","status":"True","reason":"KubeletReady","message":"kubelet is posting ready status","lastHeartbeatTime":"2024-05-01T12:00:00Z","lastTransitionTime":"2024-05-01T11:00:00Z"}],
           "nodeInfo":{"bootID":"b1","kernelVersion":"6.6.30","osImage":"NixOS 24.05 (Uakari)","kubeletVersion":"v1.30.4+k3s1","machineID":"m1","systemUUID":"s1","containerRuntimeVersion":"containerd://1.7.17-k3s1","kubeProxyVersion":"v1.30.4+k3s1","operatingSystem":"linux","architecture":"amd64"}}},
         {"kind":"Node","apiVersion":"v1",
          "metadata":{"name":"n2","uid":"6a1d","resourceVersion":"48250","labels":{"kubernetes.io/hostname":"n2"}},
          "spec":{"unschedulable":true,"taints":[{"key":"node.kubernetes.io/unschedulable","effect":"NoSchedule","timeAdded":"2024-05-01T12:00:00Z"},{"key":"node.kubernetes.io/not-ready","effect":"NoSchedule"}]},
          "status":{"conditions":[
            {"type":"Ready","status":"False","reason":"KubeletNotReady","message":"container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized","lastHeartbeatTime":"2024-05-01T12:00:05Z","lastTransitionTime":"2024-05-01T12:00:05Z"}],
           "nodeInfo":{"bootID":"b2","kernelVersion":"6.6.31"}}},
         {"kind":"Node","apiVersion":"v1",
          "metadata":{"name":"n3","uid":"7b2e","resourceVersion":"48260"},
          "spec":{},
          "status":{"conditions":[
            {"type":"Ready","status":"Unknown","reason":"NodeStatusUnknown","message":"Kubelet stopped posting node status.","lastHeartbeatTime":"2024-05-01T11:58:00Z","lastTransitionTime":"2024-05-01T11:59:00Z"}],
           "nodeInfo":{"bootID":"b3","kernelVersion":"6.6.30"}}}
        ]}
        """#

    /// docs/UPSTREAM.md#rollout-status: one settled DaemonSet, one rolling out (new generation not yet observed), one
    /// with a pod unavailable; `omitempty` counters absent where zero.
    static let daemonSetList = #"""
        {"kind":"DaemonSetList","apiVersion":"apps/v1","metadata":{"resourceVersion":"9000"},"items":[
         {"metadata":{"name":"svclb-traefik","namespace":"kube-system","generation":1,"uid":"d1"},
          "spec":{"updateStrategy":{"type":"RollingUpdate","rollingUpdate":{"maxUnavailable":1}}},
          "status":{"currentNumberScheduled":3,"numberMisscheduled":0,"desiredNumberScheduled":3,"numberReady":3,"observedGeneration":1,"updatedNumberScheduled":3,"numberAvailable":3}},
         {"metadata":{"name":"node-exporter","namespace":"kube-system","generation":4,"uid":"d2"},
          "spec":{"updateStrategy":{"type":"RollingUpdate"}},
          "status":{"currentNumberScheduled":3,"numberMisscheduled":0,"desiredNumberScheduled":3,"numberReady":3,"observedGeneration":3,"updatedNumberScheduled":3,"numberAvailable":3}},
         {"metadata":{"name":"csi-rbdplugin","namespace":"kube-system","generation":2,"uid":"d3"},
          "spec":{"updateStrategy":{"type":"RollingUpdate"}},
          "status":{"currentNumberScheduled":3,"numberMisscheduled":0,"desiredNumberScheduled":3,"numberReady":2,"observedGeneration":2,"updatedNumberScheduled":2,"numberAvailable":2,"numberUnavailable":1}}
        ]}
        """#

    /// A DaemonSet with no pods wanted: the always-present counters are 0 and the `omitempty` ones absent.
    static let emptyDaemonSet = #"""
        {"metadata":{"name":"gpu-plugin","namespace":"kube-system","generation":1},
         "status":{"currentNumberScheduled":0,"numberMisscheduled":0,"desiredNumberScheduled":0,"numberReady":0,"observedGeneration":1}}
        """#

    /// docs/UPSTREAM.md#rollout-status: a Deployment below its minimum replicas (Available False), one settled.
    static let deploymentList = #"""
        {"kind":"DeploymentList","apiVersion":"apps/v1","metadata":{"resourceVersion":"9100"},"items":[
         {"metadata":{"name":"coredns","namespace":"default","generation":2},
          "spec":{"replicas":2,"selector":{"matchLabels":{"k8s-app":"kube-dns"}}},
          "status":{"observedGeneration":2,"replicas":2,"updatedReplicas":2,"readyReplicas":2,"availableReplicas":2,
           "conditions":[
            {"type":"Available","status":"True","lastUpdateTime":"2024-05-01T11:00:00Z","lastTransitionTime":"2024-05-01T11:00:00Z","reason":"MinimumReplicasAvailable","message":"Deployment has minimum availability."},
            {"type":"Progressing","status":"True","lastUpdateTime":"2024-05-01T11:00:00Z","lastTransitionTime":"2024-05-01T10:00:00Z","reason":"NewReplicaSetAvailable","message":"ReplicaSet \"coredns-6799fbcd5\" has successfully progressed."}]}},
         {"metadata":{"name":"web","namespace":"default","generation":5},
          "spec":{"replicas":3,"selector":{"matchLabels":{"app":"web"}}},
          "status":{"observedGeneration":5,"replicas":3,"updatedReplicas":3,"readyReplicas":1,"availableReplicas":1,"unavailableReplicas":2,
           "conditions":[
            {"type":"Available","status":"False","lastUpdateTime":"2024-05-01T12:00:10Z","lastTransitionTime":"2024-05-01T12:00:10Z","reason":"MinimumReplicasUnavailable","message":"Deployment does not have minimum availability."},
            {"type":"Progressing","status":"True","lastUpdateTime":"2024-05-01T12:00:10Z","lastTransitionTime":"2024-05-01T10:00:00Z","reason":"ReplicaSetUpdated","message":"ReplicaSet \"web-5d9\" is progressing."}]}}
        ]}
        """#

    /// docs/UPSTREAM.md#rook-cephcluster: a Rook CephCluster, with `health`, `details` and `lastChecked` filled in.
    static func cephCluster(health: String, details: [String: (String, String)] = [:], lastChecked: String) -> String {
        let d = details.sorted { $0.key < $1.key }.map { #""\#($0.key)":{"severity":"\#($0.value.0)","message":"\#($0.value.1)"}"# }
            .joined(separator: ",")
        return #"""
            {"apiVersion":"ceph.rook.io/v1","kind":"CephCluster",
             "metadata":{"name":"rook-ceph","namespace":"rook-ceph","generation":3,"resourceVersion":"77001"},
             "spec":{"cephVersion":{"image":"quay.io/ceph/ceph:v18.2.2"},"dataDirHostPath":"/var/lib/rook","mon":{"count":3}},
             "status":{"phase":"Ready","state":"Created","message":"Cluster created successfully","observedGeneration":3,
              "conditions":[{"type":"Ready","status":"True","reason":"ClusterCreated","message":"Cluster created successfully"}],
              "ceph":{"health":"\#(health)","previousHealth":"HEALTH_OK",
               "lastChecked":"\#(lastChecked)","lastChanged":"2024-05-01T12:01:00Z",
               "details":{\#(d)},
               "capacity":{"bytesTotal":3221225472000,"bytesUsed":1073741824,"bytesAvailable":3220151730176,"lastUpdated":"\#(lastChecked)"},
               "fsid":"b2c4a6e0-6a3c-4d4a-9a53-1d0b6a7b9c11","versions":{"mon":{"ceph version 18.2.2":3}}},
              "version":{"image":"quay.io/ceph/ceph:v18.2.2","version":"18.2.2-0"}}}
            """#
    }
}
