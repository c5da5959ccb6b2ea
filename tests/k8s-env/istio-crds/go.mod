// Pins the istio.io/api module whose kubernetes/customresourcedefinitions.gen.yaml
// (Istio's CRDs with their OpenAPI schemas and CEL rules) the integration tests install.
// scripts/k8s-test-env.sh fetches it with `go mod download -json istio.io/api`, checked
// against go.sum. Nothing here is compiled, so don't `go mod tidy` this module: tidy would
// drop the requirement, which no Go file imports.
module meshmedic.test/k8s-env/istio-crds

go 1.26.0

require istio.io/api v1.31.4
