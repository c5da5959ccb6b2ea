#!/usr/bin/env bash
# Provisions the Kubernetes control plane that meshmedic's integration tests run against:
#   - kube-apiserver, compiled from the k8s.io/kubernetes Go module  (tests/k8s-env/kube-apiserver)
#   - etcd, compiled from the go.etcd.io/etcd/server/v3 Go module     (tests/k8s-env/etcd)
#   - Istio's CRDs, kubernetes/customresourcedefinitions.gen.yaml of
#     the istio.io/api Go module                                      (tests/k8s-env/istio-crds)
#   - Argo Rollouts' Rollout CRD, manifests/crds/rollout-crd.yaml of
#     the github.com/argoproj/argo-rollouts Go module          (tests/k8s-env/argo-rollouts-crd)
#   - Gateway API's HTTPRoute CRD (standard channel),
#     config/crd/standard/gateway.networking.k8s.io_httproutes.yaml of
#     the sigs.k8s.io/gateway-api Go module                      (tests/k8s-env/gateway-api-crd)
# Versions are pinned by those modules' go.mod and checked by their go.sum.
#
# Idempotent and cached: everything lands in $MESHMEDIC_TEST_ASSETS (default
# ~/.cache/meshmedic/test-assets) under a directory named by the component's version and a
# hash of its go.mod/go.sum, the Go version and the build flags, so a version bump builds anew
# and an unchanged tree reuses what is there (a cached run takes well under a second).
#
# Prints `export NAME=VALUE` lines on stdout, and writes the same to $MESHMEDIC_TEST_ASSETS/env,
# so a test command can do (the assignment keeps `set -e` able to see a failure, which a bare
# `eval "$(...)"` would hide):
#     exports="$(scripts/k8s-test-env.sh)" && eval "$exports" && cargo test
# Progress and build logs go to stderr.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
modules="$repo/tests/k8s-env"
assets="${MESHMEDIC_TEST_ASSETS:-${HOME}/.cache/meshmedic/test-assets}"

log() { printf 'k8s-test-env: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

command -v go >/dev/null 2>&1 || [ -x /usr/local/go/bin/go ] || die "the go command is needed (Go >= 1.26)"
command -v go >/dev/null 2>&1 || PATH="/usr/local/go/bin:$PATH"
command -v sha256sum >/dev/null 2>&1 || die "sha256sum (coreutils) is needed"

# Static, reproducible, small binaries. -mod=readonly: go.mod and go.sum are the pins, a build
# never edits them. CGO off as in Kubernetes' own release builds of kube-apiserver.
export GOFLAGS="-trimpath -buildvcs=false -mod=readonly"
export CGO_ENABLED=0
ldflags_common="-s -w"

# Asked inside a module: with GOTOOLCHAIN=auto an older go switches to the go.mod version.
go_version="$(cd "$modules/kube-apiserver" && go env GOVERSION)"

mkdir -p "$assets"
assets="$(cd "$assets" && pwd)"

# One provisioning at a time per cache (parallel test commands share it).
exec 9>"$assets/.lock"
if command -v flock >/dev/null 2>&1; then
    flock 9
fi

# mod_version DIR MODULE: the version DIR's go.mod requires of MODULE.
mod_version() {
    (cd "$1" && go list -m -f '{{.Version}}' "$2")
}

# cache_key DIR EXTRA...: hash of the module's pins, the Go version, the build settings.
cache_key() {
    local dir="$1"
    shift
    {
        cat "$dir/go.mod" "$dir/go.sum"
        printf '%s\n' "$go_version" "$GOFLAGS" "$CGO_ENABLED" "$@"
    } | sha256sum | cut -c1-12
}

# build NAME MODDIR PACKAGE LDFLAGS: builds PACKAGE in MODDIR into $out/NAME unless there.
build() {
    local name="$1" dir="$2" pkg="$3" ldflags="$4"
    if [ -x "$out/$name" ]; then
        log "$name: cached at $out/$name"
        return
    fi
    mkdir -p "$out"
    log "$name: building $pkg with $go_version (first time for this version; minutes)"
    local start=$SECONDS tmp="$out/.$name.tmp.$$"
    if ! (cd "$dir" && go build -ldflags="$ldflags" -o "$tmp" "$pkg") >"$out/build-$name.log" 2>&1; then
        rm -f "$tmp"
        cat "$out/build-$name.log" >&2
        die "$name: go build failed (log: $out/build-$name.log)"
    fi
    # A binary that cannot even say its version must not land in the cache.
    local version
    if ! version="$("$tmp" --version 2>&1)"; then
        rm -f "$tmp"
        die "$name: the built binary does not run: $version"
    fi
    version="${version%%$'\n'*}"
    mv -f "$tmp" "$out/$name"
    log "$name: built in $((SECONDS - start))s ($version) -> $out/$name"
}

# kube-apiserver ------------------------------------------------------------------------
k8s_dir="$modules/kube-apiserver"
k8s_version="$(mod_version "$k8s_dir" k8s.io/kubernetes)"
k8s_minor="${k8s_version#v1.}"
k8s_minor="${k8s_minor%%.*}"
# What Kubernetes' hack/lib/version.sh stamps, so /version and `kubectl version` tell the truth.
k8s_ldflags="$ldflags_common"
for v in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    k8s_ldflags+=" -X $v.gitVersion=$k8s_version -X $v.gitMajor=1 -X $v.gitMinor=$k8s_minor"
    k8s_ldflags+=" -X $v.gitTreeState=clean -X $v.buildDate=1970-01-01T00:00:00Z"
done
out="$assets/kube-apiserver-$k8s_version-$(cache_key "$k8s_dir" "$k8s_ldflags")"
build kube-apiserver "$k8s_dir" k8s.io/kubernetes/cmd/kube-apiserver "$k8s_ldflags"
kube_apiserver="$out/kube-apiserver"

# etcd ----------------------------------------------------------------------------------
etcd_dir="$modules/etcd"
etcd_version="$(mod_version "$etcd_dir" go.etcd.io/etcd/server/v3)"
out="$assets/etcd-$etcd_version-$(cache_key "$etcd_dir" "$ldflags_common")"
build etcd "$etcd_dir" go.etcd.io/etcd/server/v3 "$ldflags_common"
etcd="$out/etcd"

# Istio CRDs, Argo Rollouts' Rollout CRD, Gateway API's HTTPRoute CRD ---------------------
# module_file DIR MODULE PATH: the file PATH of the Go module MODULE at the version DIR's go.mod
# pins, copied into the cache once; prints the cached file's path.
module_file() {
    local dir="$1" module="$2" path="$3" version out file json src
    version="$(mod_version "$dir" "$module")"
    out="$assets/$(basename "$dir")-$version-$(cache_key "$dir")"
    file="$out/$(basename "$path")"
    if [ -s "$file" ]; then
        log "$module $version: cached at $file"
    else
        mkdir -p "$out"
        # Checked against go.sum by the go command; Dir is the extracted module in the module cache.
        json="$(cd "$dir" && go mod download -json "$module")" \
            || die "go mod download $module failed: $json"
        src="$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
        if [ -z "$src" ] || [ ! -s "$src/$path" ]; then
            die "$module $version has no $path (go said: $json)"
        fi
        cp "$src/$path" "$file.tmp.$$"
        chmod 644 "$file.tmp.$$" # the module cache is read-only
        mv -f "$file.tmp.$$" "$file"
        log "$module $version: $path -> $file"
    fi
    printf '%s\n' "$file"
}
istio_version="$(mod_version "$modules/istio-crds" istio.io/api)"
istio_crds="$(module_file "$modules/istio-crds" istio.io/api kubernetes/customresourcedefinitions.gen.yaml)"
rollout_crd="$(module_file "$modules/argo-rollouts-crd" github.com/argoproj/argo-rollouts manifests/crds/rollout-crd.yaml)"
httproute_crd="$(module_file "$modules/gateway-api-crd" sigs.k8s.io/gateway-api config/crd/standard/gateway.networking.k8s.io_httproutes.yaml)"

# Result ----------------------------------------------------------------------------------
# %q quotes for the shell, so a cache path with spaces still evals.
env_text="$(
    printf 'export MESHMEDIC_KUBE_APISERVER=%q\n' "$kube_apiserver"
    printf 'export MESHMEDIC_ETCD=%q\n' "$etcd"
    printf 'export MESHMEDIC_ISTIO_CRDS=%q\n' "$istio_crds"
    printf 'export MESHMEDIC_ROLLOUT_CRD=%q\n' "$rollout_crd"
    printf 'export MESHMEDIC_HTTPROUTE_CRD=%q\n' "$httproute_crd"
    printf 'export MESHMEDIC_K8S_VERSION=%q\n' "$k8s_version"
    printf 'export MESHMEDIC_ETCD_VERSION=%q\n' "$etcd_version"
    printf 'export MESHMEDIC_ISTIO_VERSION=%q\n' "$istio_version"
)"
printf '%s\n' "$env_text" >"$assets/env.tmp.$$"
mv -f "$assets/env.tmp.$$" "$assets/env"
printf '%s\n' "$env_text"
