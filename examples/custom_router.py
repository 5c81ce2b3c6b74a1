"""Example CUSTOM router: send each request to the instance with the fewest queued requests.

Use it with:
    python main.py --dataset dataset/example_trace.jsonl \
        --cluster-config cluster_config/single_node_multi_instance.json \
        --request-routing-policy CUSTOM --custom-router examples.custom_router:ShortestQueue

A router is any class constructed with the run's seed and offering
`route(request, candidates) -> instance`, where `candidates` are the instances allowed to
take the request (prefill-capable ones on arrival, decode ones at a P/D hand-off). An
instance exposes `index`, `spec` (its cluster-config entry), `scheduler.num_requests()`,
`outstanding_tokens()` and `kv.free_blocks`. A router reads the request and never assigns
to it: a changed field (its prompt, output, arrival, progress) stops the run with an error.
"""

from __future__ import annotations


class ShortestQueue:
    """Fewest waiting or running requests; ties go to the lowest instance id."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def route(self, request, candidates):
        """Pick the least busy candidate."""
        return min(candidates, key=lambda inst: (inst.scheduler.num_requests(), inst.index))
