#!/usr/bin/env bash
# Set up if needed, then simulate. Without arguments: the built-in example (one A6000 serving
# Llama-3.1-8B, 100 ShareGPT-like requests, roofline timing). `./run.sh examples`: one run per
# feature into output/examples/. `./run.sh sweep SPEC.yaml [flags]`: python -m evaluation.sweep
# (rows in output/<spec name>.csv by default). With other arguments: `python main.py ARGS`.
set -euo pipefail
cd "$(dirname "$0")"
if [ "${1:-}" = "examples" ]; then
    ./compile.sh plot >&2  # the timeline example draws PNG plots
    shift
    exec .venv/bin/python -m examples.run_all "$@"
fi
if [ "${1:-}" = "sweep" ]; then
    ./compile.sh plot >&2  # the Pareto plot is drawn with matplotlib
    shift
    exec .venv/bin/python -m evaluation.sweep "$@"
fi
./compile.sh >&2
if [ "$#" -eq 0 ]; then
    set -- --cluster-config cluster_config/single_node_single_instance.json \
        --dataset dataset/example_sharegpt_req100_rate10.jsonl --num-req 100 \
        --log-interval 1.0 --output output/example_single_run.csv
fi
exec .venv/bin/python main.py "$@"
