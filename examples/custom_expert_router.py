"""Example CUSTOM expert router: every token goes to the same k "hot" experts.

Use it with a mixture-of-experts model, e.g.:
    python main.py --dataset dataset/example_trace.jsonl \
        --cluster-config my_moe_cluster.json \
        --expert-routing-policy CUSTOM \
        --custom-expert-router examples.custom_expert_router:HotExperts

where `my_moe_cluster.json` is `cluster_config/single_node_single_instance.json` with
"model_name": "microsoft/Phi-mini-MoE-instruct".

An expert router is constructed without arguments and implements `ExpertRouter` of
`inference_serving/expert_router.py`: `route(tokens, experts, k, layers, seed)` returns, for
each of the `layers` MoE layers, an integer array with the number of the iteration's `tokens`
each of the `experts` receives. Every token goes to k distinct experts, so each count lies in
0..tokens and a layer's counts sum to tokens · k (checked). The answer is memoized per token
count, so it must depend on the arguments only (draw from `numpy.random.default_rng(seed)` for
randomness). An expert's time follows its token count, an expert without tokens still costs
one token, and under TP expert e runs on rank e mod TP, so skew shows up as slower iterations.
"""

from __future__ import annotations

import numpy as np


class HotExperts:
    """The worst imbalance: experts 0..k-1 take every token, the others none."""

    def route(self, tokens: int, experts: int, k: int, layers: int,
              seed: int) -> list[np.ndarray]:
        """The same hot counts in every layer."""
        counts = np.zeros(experts, dtype=np.int64)
        counts[:k] = tokens
        return [counts] * layers
