// Pins the github.com/argoproj/argo-rollouts module whose manifests/crds/rollout-crd.yaml
// (Argo Rollouts' Rollout CRD) the Rollout integration test installs. scripts/k8s-test-env.sh
// fetches it with `go mod download -json github.com/argoproj/argo-rollouts`, checked against
// go.sum. Nothing here is compiled, so don't `go mod tidy` this module: tidy would drop the
// requirement, which no Go file imports.
module meshmedic.test/k8s-env/argo-rollouts-crd

go 1.26.0

require github.com/argoproj/argo-rollouts v1.10.0
