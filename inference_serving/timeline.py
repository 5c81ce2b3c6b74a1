"""`--trace-output`: the run as Chrome trace-event JSON (Perfetto UI, chrome://tracing).

One process per instance with one track per NPU: a span per batch (pipeline stage) carrying
its token counts, prefill/decode mix and the `IterationCost` busy times, and a counter of
compute / communication / memory busy time as a share of the span. P/D hand-offs are flow
arrows from the prefill batch to the decode batch that first runs the request. Process 0 holds
one async span per request (queued, prefill, decode). Times are µs (the format's unit).

Size bound: the first `max_requests` requests of the trace get spans and flows; batches are
recorded until all of those have finished (0 = everything).
"""

from __future__ import annotations

import json
from pathlib import Path

from inference_serving.instance import Instance
from inference_serving.iteration_cost import IterationCost
from inference_serving.observers import Observer
from inference_serving.request import Request
from inference_serving.scheduler.base import Batch
from inference_serving.simulator import SimResult
from llmsim_core.atomic_write import write_atomic

REQUESTS_PID = 0


def _us(ns: int) -> float:
    return ns / 1000


class Timeline(Observer):
    """Collects trace events during the run and writes them atomically at the end."""

    def __init__(self, path: Path, instances: list[Instance], total_requests: int,
                 max_requests: int = 1000) -> None:
        self.path = path
        self.limit = min(max_requests, total_requests) if max_requests else total_requests
        self.finished_traced = 0
        self.events: list[dict] = []
        # Per instance: when each pipeline stage last became free (mirrors Instance.pipeline).
        self.stage_free: dict[int, list[int]] = {}
        # Last-stage span (track, start µs) of each in-flight batch, for P/D flow sources.
        self.spans: dict[int, tuple[int, int, float]] = {}
        self.flows: dict[int, tuple[int, int, float]] = {}
        self.preemptions: dict[int, list[int]] = {}
        self.pending_idle: dict[tuple[int, int], int] = {}
        self._metadata(instances)

    def _metadata(self, instances: list[Instance]) -> None:
        meta = [{"ph": "M", "name": "process_name", "pid": REQUESTS_PID, "tid": 0,
                 "args": {"name": "Requests"}}]
        for inst in instances:
            spec = inst.spec
            role = f" {spec.pd_type}" if spec.pd_type else ""
            pid = inst.index + 1
            meta.append({"ph": "M", "name": "process_name", "pid": pid, "tid": 0,
                         "args": {"name": f"Instance {inst.index}{role}: {inst.model.name} on "
                                  f"{spec.npu_num}x {spec.hardware} (TP{spec.tp}, PP{spec.pp})"}})
            meta.append({"ph": "M", "name": "process_sort_index", "pid": pid, "tid": 0,
                         "args": {"sort_index": pid}})
            for npu in range(spec.first_npu, spec.first_npu + spec.npu_num):
                meta.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": npu,
                             "args": {"name": f"NPU {npu}"}})
        self.events.extend(meta)

    def traced(self, request: Request) -> bool:
        """True for the requests the bound keeps."""
        return request.rid < self.limit

    @property
    def recording(self) -> bool:
        """Batches are recorded until every traced request has finished."""
        return self.finished_traced < self.limit

    def on_batch_start(self, inst: Instance, batch: Batch, start_ns: int, end_ns: int,
                       costs: list[IterationCost]) -> None:
        """One span per stage on each of its NPUs, busy counters, hand-off flow ends."""
        for request in batch.preempted:
            if self.traced(request):
                self.preemptions.setdefault(request.rid, []).append(start_ns)
        if not self.recording:
            return
        pid = inst.index + 1
        free = self.stage_free.setdefault(inst.index, [0] * len(costs))
        prefill_tokens = sum(t for t, d in zip(batch.tokens, batch.decode, strict=True) if not d)
        decodes = sum(batch.decode)
        args = {"batch": batch.batch_id, "requests": len(batch.requests),
                "tokens": batch.total_tokens, "prefill_tokens": prefill_tokens,
                "decode_tokens": batch.total_tokens - prefill_tokens,
                "prefill_requests": len(batch.requests) - decodes, "decode_requests": decodes}
        name = "prefill" if not decodes else "decode" if not prefill_tokens else "mixed"
        t, forward = start_ns, 0
        first_track = None
        for s, cost in enumerate(costs):
            begin = max(t + forward, free[s])
            t, forward = begin + cost.duration_ns, cost.forward_ns
            free[s] = t
            npus = sorted(cost.devices) or [inst.spec.first_npu + s * inst.spec.tp]
            first_track = first_track if first_track is not None else npus[0]
            self._stage(pid, npus, begin, cost, name, {**args, "stage": s})
            self.spans[id(batch)] = (pid, npus[0], _us(begin))
        if inst.spec.pd_type == "decode" and self.flows:
            for request in batch.requests:
                source = self.flows.pop(request.rid, None)
                if source is not None:
                    self._flow(request.rid, source, (pid, first_track, _us(start_ns)))

    def _stage(self, pid: int, npus: list[int], begin: int, cost: IterationCost, name: str,
               args: dict) -> None:
        dur = cost.duration_ns
        extra = {"duration_ns": dur, "link_bytes": cost.link_bytes,
                 "tier_bytes": cost.tier_bytes}
        for npu in npus:
            busy = cost.devices.get(npu)
            span_args = {**args, **extra}
            if busy is not None:
                span_args.update(compute_ns=busy.compute_ns, comm_ns=busy.comm_ns,
                                 memory_ns=busy.memory_ns)
            self.events.append({"ph": "X", "name": name, "cat": "batch", "pid": pid,
                                "tid": npu, "ts": _us(begin), "dur": _us(dur),
                                "args": span_args})
            if busy is None or not dur:
                continue
            idle_at = self.pending_idle.pop((pid, npu), None)
            if idle_at is not None and idle_at < begin:
                self._counter(pid, npu, idle_at, 0, 0, 0)
            self._counter(pid, npu, begin, busy.compute_ns / dur * 100,
                          busy.comm_ns / dur * 100, busy.memory_ns / dur * 100)
            self.pending_idle[(pid, npu)] = begin + dur

    def _counter(self, pid: int, npu: int, time_ns: int, compute: float, comm: float,
                 memory: float) -> None:
        self.events.append({"ph": "C", "name": f"NPU {npu} busy (% of batch)", "pid": pid,
                            "tid": npu, "ts": _us(time_ns),
                            "args": {"compute": round(compute, 3), "comm": round(comm, 3),
                                     "memory": round(memory, 3)}})

    def _flow(self, rid: int, source: tuple[int, int, float],
              target: tuple[int, int, float]) -> None:
        for ph, (pid, tid, ts) in (("s", source), ("f", target)):
            event = {"ph": ph, "name": "KV hand-off", "cat": "pd", "id": rid, "pid": pid,
                     "tid": tid, "ts": ts}
            if ph == "f":
                event["bp"] = "e"
            self.events.append(event)

    def on_batch_end(self, inst: Instance, batch: Batch, end_ns: int,
                     finished: list[Request]) -> None:
        """Remember hand-off sources; emit the spans of finished traced requests."""
        span = self.spans.pop(id(batch), None)
        if span is not None:
            for request in batch.handoff:
                if self.traced(request):
                    self.flows[request.rid] = span
        for request in finished:
            if self.traced(request):
                self.finished_traced += 1
                self._request_spans(request, inst.index)

    def _request_spans(self, r: Request, instance: int) -> None:
        phases = [("queued", r.arrival, r.first_scheduled),
                  ("prefill", r.first_scheduled, r.first_token),
                  ("decode", r.first_token, r.end)]
        args = {"prompt": r.prompt, "output": r.output, "routed_instance": r.routed_instance,
                "instance": instance, "ttft_ns": r.ttft, "latency_ns": r.latency}
        common = {"cat": "request", "id": r.rid, "pid": REQUESTS_PID, "tid": 0}
        out = [{"ph": "b", "name": f"request {r.rid}", "ts": _us(r.arrival), "args": args,
                **common}]
        for name, begin, end in phases:
            if end > begin:
                out.append({"ph": "b", "name": name, "ts": _us(begin), **common})
                out.append({"ph": "e", "name": name, "ts": _us(end), **common})
        out += [{"ph": "n", "name": "preempted", "ts": _us(t), **common}
                for t in self.preemptions.pop(r.rid, ())]
        out.append({"ph": "e", "name": f"request {r.rid}", "ts": _us(r.end), **common})
        self.events.extend(out)

    def on_finish(self, result: SimResult) -> None:
        """Close the busy counters and write the file."""
        for (pid, npu), idle_at in sorted(self.pending_idle.items()):
            self._counter(pid, npu, idle_at, 0, 0, 0)
        self.pending_idle.clear()
        doc = {"traceEvents": self.events, "displayTimeUnit": "ns",
               "otherData": {"traced_requests": self.limit,
                             "simulated_ns": result.end_ns}}
        write_atomic(self.path, json.dumps(doc, separators=(",", ":")) + "\n")
