#!/bin/sh
# Build knserve's images (`make images`): REGISTRY/knserve/{runtime,function-base,operator}:TAG
# from the Containerfiles beside this script, with podman or docker, whichever can build here.
#
#   REGISTRY       registry host[/path] prefix, empty for Docker Hub's knserve/… (default empty)
#   TAG            image tag, never latest (default: pyproject.toml's version)
#   RUNTIME_EXTRAS the runtime image's framework extras (default sklearn,xgboost,lightgbm,onnx)
#   ENGINE         podman or docker (default: the first of them that can build)
#   PUSH=1         push each image after building it
#
# `build-images.sh --print` prints the build commands instead of running them. The names are
# knserve.knative.apiserver.release_images' (what `knserve export --registry --tag` writes).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/pyproject.toml" | head -n 1)
registry=${REGISTRY:-}
registry=${registry%/}
tag=${TAG:-$version}
extras=${RUNTIME_EXTRAS:-sklearn,xgboost,lightgbm,onnx}

if [ "$tag" = latest ]; then
    echo "make images: TAG may not be latest: manifests name a fixed tag (default $version)" >&2
    exit 2
fi
prefix=${registry:+$registry/}

can_build() {
    command -v "$1" >/dev/null 2>&1 && "$1" info >/dev/null 2>&1
}

engine=${ENGINE:-}
print_only=0
if [ "${1:-}" = --print ]; then
    print_only=1
    engine=${engine:-podman}
elif [ -z "$engine" ]; then
    for candidate in podman docker; do
        if can_build "$candidate"; then engine=$candidate; break; fi
    done
    if [ -z "$engine" ]; then
        found=""
        for candidate in podman docker; do
            if command -v "$candidate" >/dev/null 2>&1; then
                found="$found $candidate (installed, but \`$candidate info\` fails: no engine answers)"
            fi
        done
        echo "make images: neither podman nor docker can build here:${found:- neither is installed}." >&2
        echo "Install podman (apt-get install podman) or start Docker's daemon, then run make images again." >&2
        exit 1
    fi
elif ! can_build "$engine"; then
    echo "make images: ENGINE=$engine cannot build here (\`$engine info\` fails); start it or unset ENGINE." >&2
    exit 1
fi

for name in runtime function-base operator; do
    image="${prefix}knserve/$name:$tag"
    set -- build -f "$here/Containerfile.$name" -t "$image"
    if [ "$name" = runtime ]; then set -- "$@" --build-arg "EXTRAS=$extras"; fi
    set -- "$@" "$root"
    echo "$engine $*"
    [ "$print_only" = 1 ] && continue
    "$engine" "$@"
    if [ "${PUSH:-}" = 1 ]; then
        echo "$engine push $image"
        "$engine" push "$image"
    fi
done
