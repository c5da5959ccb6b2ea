#!/usr/bin/env python3
"""Generates a mesh for benches/analyze-vs-istioctl.sh: per service a Deployment, a Service, a
DestinationRule and a VirtualService; 50 services per injected namespace. Some services carry the
causes meshmedic looks for (nginx behind a 1h idle timeout, routes without `reset` retries), the
rest are healthy, so both tools do real work. Deterministic: the same N gives the same bytes.

Usage: gen-mesh.py SERVICES OUT.yaml
  PER_NAMESPACE=n  services per namespace (default 50); a large one shows whether lookups inside
                   a namespace stay linear (one namespace of 10,000 services took 10x longer)
  POLICIES=1       also a Sidecar and a PeerAuthentication per service (each selecting its
                   workload) and a wildcard DestinationRule per namespace
  GATEWAY=1        also, per namespace, a Gateway and one VirtualService bound to it with a
                   path route to each of the namespace's services (an API gateway)
"""
import os
import sys

PER_NAMESPACE = int(os.environ.get("PER_NAMESPACE", "50"))
POLICIES = os.environ.get("POLICIES", "0") == "1"
GATEWAY = os.environ.get("GATEWAY", "0") == "1"


def gateway(ns: str, first: int, last: int) -> str:
    routes = "".join(
        f"  - match: [{{uri: {{prefix: /svc-{i:05d}/}}}}]\n"
        f"    route: [{{destination: {{host: svc-{i:05d}, port: {{number: 80}}}}}}]\n"
        for i in range(first, last)
    )
    return f"""---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: api
  namespace: {ns}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: ["{ns}.example.com"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: api
  namespace: {ns}
spec:
  hosts: ["{ns}.example.com"]
  gateways: [api]
  http:
{routes}"""


def policies(ns: str, i: int) -> str:
    name = f"svc-{i:05d}"
    wildcard = "" if i % PER_NAMESPACE else f"""---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: all-in-namespace
  namespace: {ns}
spec:
  host: "*.{ns}.svc.cluster.local"
  trafficPolicy:
    tls: {{mode: ISTIO_MUTUAL}}
"""
    return f"""{wildcard}---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: {name}
  namespace: {ns}
spec:
  workloadSelector:
    labels: {{app: {name}}}
  egress:
  - hosts: ["./*", "istio-system/*"]
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: {name}
  namespace: {ns}
spec:
  selector:
    matchLabels: {{app: {name}}}
  mtls: {{mode: STRICT}}
  portLevelMtls:
    9090: {{mode: PERMISSIVE}}
"""


def service(ns: str, i: int) -> str:
    name = f"svc-{i:05d}"
    image = "nginx:1.27" if i % 3 == 0 else "registry.example/app:1.0"
    retry = "" if i % 2 == 0 else "\n    retries: {attempts: 2, retryOn: 'connect-failure,reset,503'}"
    return f"""---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: {ns}
  labels: {{app: {name}, version: v1}}
spec:
  replicas: 2
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}, version: v1}}
    spec:
      containers:
      - name: app
        image: {image}
        ports:
        - containerPort: 8080
        readinessProbe:
          httpGet: {{path: /healthz, port: 8080}}
        resources:
          requests: {{cpu: 100m, memory: 64Mi}}
---
apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: {ns}
spec:
  selector: {{app: {name}}}
  ports:
  - name: http
    port: 80
    targetPort: 8080
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: {name}
  namespace: {ns}
spec:
  host: {name}.{ns}.svc.cluster.local
  trafficPolicy:
    connectionPool:
      http: {{idleTimeout: 1h, maxRequestsPerConnection: 100}}
  subsets:
  - name: v1
    labels: {{version: v1}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: {name}
  namespace: {ns}
spec:
  hosts: [{name}.{ns}.svc.cluster.local]
  http:
  - route:
    - destination: {{host: {name}.{ns}.svc.cluster.local, subset: v1}}
    timeout: 10s{retry}
"""


def main() -> None:
    services, out = int(sys.argv[1]), sys.argv[2]
    with open(out, "w") as f:
        for n in range((services + PER_NAMESPACE - 1) // PER_NAMESPACE):
            f.write(f"---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: ns-{n:04d}\n  labels: {{istio-injection: enabled}}\n")
        for i in range(services):
            f.write(service(f"ns-{i // PER_NAMESPACE:04d}", i))
            if POLICIES:
                f.write(policies(f"ns-{i // PER_NAMESPACE:04d}", i))
        if GATEWAY:
            for first in range(0, services, PER_NAMESPACE):
                last = min(first + PER_NAMESPACE, services)
                f.write(gateway(f"ns-{first // PER_NAMESPACE:04d}", first, last))


if __name__ == "__main__":
    main()
