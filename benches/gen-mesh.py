#!/usr/bin/env python3
"""Generates a mesh for benches/analyze-vs-istioctl.sh: per service a Deployment, a Service, a
DestinationRule and a VirtualService; 50 services per injected namespace. Some services carry the
causes meshmedic looks for (nginx behind a 1h idle timeout, routes without `reset` retries), the
rest are healthy, so both tools do real work. Deterministic: the same N gives the same bytes.

Usage: gen-mesh.py SERVICES OUT.yaml
"""
import sys

PER_NAMESPACE = 50


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


if __name__ == "__main__":
    main()
