#!/usr/bin/env bash
# Set up if needed, then simulate. Without arguments: the built-in example (one A6000 serving
# Llama-3.1-8B, 100 ShareGPT-like requests, roofline timing). With arguments: `python main.py ARGS`.
set -euo pipefail
cd "$(dirname "$0")"
./compile.sh >&2
if [ "$#" -eq 0 ]; then
    set -- --cluster-config cluster_config/single_node_single_instance.json \
        --dataset dataset/example_sharegpt_req100_rate10.jsonl --num-req 100 \
        --log-interval 1.0 --output output/example_single_run.csv
fi
exec .venv/bin/python main.py "$@"
