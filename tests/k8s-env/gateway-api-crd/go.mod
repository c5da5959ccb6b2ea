// Pins the sigs.k8s.io/gateway-api module whose
// config/crd/standard/gateway.networking.k8s.io_httproutes.yaml (Gateway API's HTTPRoute CRD)
// the HTTPRoute integration test installs. scripts/k8s-test-env.sh fetches it with
// `go mod download -json sigs.k8s.io/gateway-api`, checked against go.sum. Nothing here is
// compiled, so don't `go mod tidy` this module: tidy would drop the requirement, which no Go
// file imports.
module meshmedic.test/k8s-env/gateway-api-crd

go 1.26.0

require sigs.k8s.io/gateway-api v1.6.3
