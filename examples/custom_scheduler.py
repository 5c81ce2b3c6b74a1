"""Example CUSTOM scheduler: the vLLM-v1 scheduler with at most four requests per batch.

Use it with:
    python main.py --dataset dataset/example_sharegpt_req100_rate10.jsonl \
        --scheduler CUSTOM --custom-scheduler examples.custom_scheduler:CappedBatchScheduler

A scheduler is constructed once per instance as `Class(options, kv, resources)`:
`options` (`inference_serving.scheduler.base.SchedulerOptions`) holds the token budget, the
sequence limit and the other flags, `kv` is the instance's paged KV pool and `resources` the
KV block size in bytes, the NPU count, the node's host memory and a warning sink. The class
implements `Scheduler` of `inference_serving/scheduler/base.py`: `add(request)`,
`schedule(now) -> Batch | None`, `update(batch, now) -> finished requests`, `num_requests()`,
`requests()` and the attribute `host_bytes`; the class attribute `legacy_limits` chooses the
existing simulator's option meanings (whole prompts, `--max-batch 0` = unlimited). The
shortest way is to subclass `VllmScheduler` or `LegacyScheduler` and change what you need.
"""

from __future__ import annotations

from dataclasses import replace

from inference_serving.scheduler.vllm import VllmScheduler


class CappedBatchScheduler(VllmScheduler):
    """vLLM-v1 scheduling with the running requests (hence each batch) capped at four."""

    MAX_REQUESTS = 4

    def __init__(self, options, kv, resources) -> None:
        capped = replace(options, max_num_seqs=min(options.max_num_seqs, self.MAX_REQUESTS))
        super().__init__(capped, kv, resources)
