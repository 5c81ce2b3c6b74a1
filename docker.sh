#!/usr/bin/env bash
# Run the simulator in a container: builds the image on first use (or with --build), mounts the
# current folder at /work and passes the arguments on, as `./run.sh ARGS` / `python main.py ARGS`
# would. Without arguments: run.sh's built-in example. Usage: ./docker.sh [--build] [ARGS]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
image="${LLMSIM_IMAGE:-llmservingsim-py}"
build=0
if [ "${1:-}" = "--build" ]; then
    build=1
    shift
fi
if ! command -v docker >/dev/null 2>&1; then
    echo "error: docker not found, docker.sh, install Docker or run ./run.sh instead" >&2
    exit 2
fi
if [ "$build" -eq 1 ] || ! docker image inspect "$image" >/dev/null 2>&1; then
    docker build -t "$image" "$here" >&2
fi
if [ "$#" -eq 0 ]; then
    set -- --cluster-config cluster_config/single_node_single_instance.json \
        --dataset dataset/example_sharegpt_req100_rate10.jsonl --num-req 100 \
        --log-interval 1.0 --output output/example_single_run.csv
fi
# A terminal gets the progress bar; files written under /work belong to the caller.
tty=()
if [ -t 0 ] && [ -t 1 ]; then
    tty=(-it)
fi
exec docker run --rm ${tty[@]+"${tty[@]}"} --user "$(id -u):$(id -g)" \
    -v "$PWD":/work -w /work "$image" "$@"
