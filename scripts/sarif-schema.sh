#!/usr/bin/env bash
# Prints the path of the SARIF 2.1.0 JSON schema that tests/sarif.rs validates `-o sarif` against.
# The schema is not committed: it comes from an npm package that ships it (Microsoft's
# @microsoft/jest-sarif, lib/schemas/sarif-2.1.0-rtm.5.json), fetched once with npm and cached in
# ~/.cache/meshmedic/ (MESHMEDIC_CACHE overrides the folder).
set -euo pipefail
package="@microsoft/jest-sarif@1.0.0-beta.0"
member="package/lib/schemas/sarif-2.1.0-rtm.5.json"
cache="${MESHMEDIC_CACHE:-$HOME/.cache/meshmedic}"
schema="$cache/sarif-schema-2.1.0.json"
if [ ! -s "$schema" ]; then
    command -v npm >/dev/null || { echo "sarif-schema.sh: npm is needed to fetch $package" >&2; exit 1; }
    mkdir -p "$cache"
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    (cd "$work" && npm pack --silent "$package" >/dev/null)
    tar -xzf "$work"/*.tgz -C "$work" "$member"
    mv "$work/$member" "$schema.tmp"
    mv "$schema.tmp" "$schema"
fi
echo "$schema"
