"""The discrete-event serving loop: arrivals, iteration completions and log ticks."""

from __future__ import annotations

import gc
import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from inference_serving.instance import Instance
from inference_serving.invariants import check_finished, check_instance
from inference_serving.metrics import TokenCounters
from inference_serving.observers import Observer, hooks
from inference_serving.request import Request
from inference_serving.request_table import RequestTable
from inference_serving.router import RoundRobinRouter, Router
from inference_serving.scheduler.base import Batch
from inference_serving.scheduler.user_checks import (
    check_user_batch,
    check_user_finished,
    is_user_scheduler,
)
from inference_serving.sim_log import SimLogger
from llmsim_core.bounds import status_window_limit
from llmsim_core.errors import InputError

if TYPE_CHECKING:
    from inference_serving.power import PowerReport

# Event kinds double as tie-break priorities: at one instant, completions and wake-ups (a
# pipeline's first stage freeing, a compatibility poll) come before arrivals, and all before
# the log tick that reports the window ending at that instant.
DONE, WAKE, ARRIVAL, LOG = 0, 1, 2, 3
GC_THRESHOLDS = (20_000, 50, 1_000)  # young collections 30x rarer, full ones all but never
ITERATIONS_PER_TOKEN, MIN_ITERATIONS = 16, 100_000  # the no-progress bound (see _run)


@dataclass(slots=True)
class SimResult:
    """What a finished run hands to the reporting layer."""

    end_ns: int
    iterations: int
    counters: TokenCounters
    instances: list[Instance]
    power: PowerReport | None = None  # set by the power meter when power is modelled


class Simulator:
    """Runs requests through the instances until every request has finished.

    Requests are made from the table as they arrive and dropped by the simulator once they
    finish (observers get them at that moment), so memory follows the requests in flight.
    """

    def __init__(self, instances: list[Instance], requests: RequestTable, router: Router,
                 interval_ns: int, log: SimLogger, observers: Sequence[Observer] = (),
                 check_invariants: bool = False, idle_poll_ns: int = 0) -> None:
        self.instances = instances
        self.requests = requests
        self.router = router
        self.counters = TokenCounters(interval_ns)
        self.log = log
        self.check = check_invariants
        observers = list(observers)
        self._batch_start = hooks(observers, "on_batch_start")
        self._batch_end = hooks(observers, "on_batch_end")
        self._request = hooks(observers, "on_request")
        self._window = hooks(observers, "on_window")
        self._finish = hooks(observers, "on_finish")
        # Compatibility: on an idle cluster the existing simulator sees arrivals only at poll
        # instants, every idle_poll_ns after the last event (serving.md §1).
        self.idle_poll_ns = idle_poll_ns
        self.idle_since = 0
        self.debug = log.enabled("DEBUG")
        self.candidates = [i for i in instances if i.spec.pd_type != "decode"]
        self.decoders = [i for i in instances if i.spec.pd_type == "decode"]
        # P/D hand-off routes with the same policy; round robin keeps its own counter, the
        # random policy continues the single seeded stream (serving.md §3).
        self.decode_router = RoundRobinRouter(0) if isinstance(router, RoundRobinRouter) \
            else router
        self._heap: list[tuple[int, int, int, object]] = []
        self._seq = 0
        self.longest_ns = 0  # the longest iteration so far (for the endless-run error)
        # A trace may arrive up to the status-window limit in (dataset check) and take as long
        # again to drain; a run past twice that has an iteration of hours.
        self.max_windows = 2 * status_window_limit(len(instances))
        # Instances whose scheduler is not a shipped class: their batches are checked.
        self.user_schedulers = {i.index for i in instances if is_user_scheduler(i.scheduler)}
        # ... whose finished requests must still hold their trace lengths and arrival.
        self.trace_fields = dict(zip(requests.rid.tolist(), zip(
            requests.prompt.tolist(), requests.output.tolist(), requests.arrival.tolist(),
            strict=True), strict=True)) if self.user_schedulers else {}
        self.validate_fit()

    def _push(self, time: int, kind: int, payload: object) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (time, kind, self._seq, payload))

    def validate_fit(self) -> None:
        """Every request must fit in the KV pool of any instance it can be routed to."""
        targets = (*self.candidates, *self.decoders)
        table = self.requests
        first = table.first_longer_than(min(i.kv.num_blocks * i.kv.block_size for i in targets))
        if first is None:
            return
        tokens = int(table.prompt[first] + table.output[first] - 1)
        for inst in targets:
            need = inst.kv.blocks_for(tokens)
            if need > inst.kv.num_blocks:
                raise InputError(
                    f"request {int(table.rid[first])} needs {need} KV blocks ({tokens} tokens) "
                    f"but instance {inst.index} holds only {inst.kv.num_blocks}", "dataset",
                    "use more NPU memory, more NPUs or shorter requests")

    def run(self) -> SimResult:
        """Simulate to completion and return the final state."""
        # A run makes millions of short-lived objects beside large long-lived caches; with
        # the default thresholds the cyclic collector rescans those caches over and over (a
        # fifth of a long run's time). Nothing the loop makes needs it to free memory.
        thresholds = gc.get_threshold()
        gc.set_threshold(*GC_THRESHOLDS)
        try:
            return self._run()
        finally:
            gc.set_threshold(*thresholds)

    def _run(self) -> SimResult:
        total = len(self.requests)
        finished = 0
        iterations = 0
        # Every iteration computes at least one token: far more iterations than the trace has
        # tokens (recomputation after preemption included) means no progress is being made.
        tokens = int(self.requests.prompt.sum()) + int(self.requests.output.sum())
        max_iterations = ITERATIONS_PER_TOKEN * tokens + MIN_ITERATIONS
        end_ns = 0
        dirty: set[int] = set()
        pending = iter(self.requests)
        upcoming = next(pending)
        self._push(upcoming.arrival, ARRIVAL, upcoming)
        self._push(self.counters.interval_ns, LOG, None)
        # The existing simulator's first poll: min(first arrival (at least 1 ns), log interval).
        self.idle_since = min(max(upcoming.arrival, 1), self.counters.interval_ns)
        heap = self._heap
        while heap:
            time, kind, _, payload = heapq.heappop(heap)
            if kind == DONE:
                inst, batch = payload
                finished += self.complete(inst, batch, time)
                end_ns = time
                self.idle_since = time
                dirty.add(inst.index)
                dirty.update(self.pass_on(batch, time))
            elif kind == WAKE:
                dirty.add(payload)
            elif kind == ARRIVAL:
                index = self.arrive(payload)
                poll = self._poll_instant(time)
                if poll > time:
                    self._push(poll, WAKE, index)
                else:
                    dirty.add(index)
                upcoming = next(pending, None)
                if upcoming is not None:
                    self._push(upcoming.arrival, ARRIVAL, upcoming)
            elif finished < total:
                self.on_window(time, self.counters.close_window())
                if len(self.counters.windows) > 2 * self.max_windows:  # (prompt, gen) pairs
                    self.endless(time, total - finished, total)
                self._push(time + self.counters.interval_ns, LOG, None)
            if dirty and (not heap or heap[0][0] > time):
                for index in sorted(dirty):
                    iterations += self._start_batch(self.instances[index], time)
                dirty.clear()
                if iterations > max_iterations:
                    self.spinning(time, iterations, tokens)
            if kind == LOG and len(heap) == 1 and finished < total:
                self.stalled(time)  # only the next status tick is left: nothing can move
        if finished != total:
            raise RuntimeError(f"simulation stalled with {total - finished} unfinished requests")
        return self.finish(SimResult(end_ns, iterations, self.counters, self.instances))

    def spinning(self, time: int, iterations: int, tokens: int) -> None:
        """Stop a run that keeps iterating without finishing its requests."""
        raise InputError(f"the run made {iterations} iterations by {time / 1e9:.6g} s of "
                         f"simulated time for a trace of {tokens} tokens: no progress",
                         "the run", "check a CUSTOM scheduler or router (a request queued "
                         "twice, a batch computing nothing)")

    def endless(self, time: int, left: int, total: int) -> None:
        """Stop a run whose clock has stepped through more status windows than any run
        prints (an iteration of hours or days: a latency or bandwidth far off)."""
        raise InputError(f"the run reached {time / 1e9:.6g} s of simulated time "
                         f"({self.max_windows} status windows) with {left} of {total} "
                         f"requests unfinished; the longest iteration took "
                         f"{self.longest_ns / 1e9:.6g} s", "the run",
                         "check the latencies and bandwidths of the cluster config and the "
                         "profiles, or raise --log-interval")

    def stalled(self, time: int) -> None:
        """Stop a run in which requests remain but no instance can schedule any of them."""
        stuck = [(inst, inst.scheduler.requests()) for inst in self.instances
                 if inst.scheduler.num_requests()]
        inst, waiting = stuck[0] if stuck else (self.instances[0], [])
        first = f" (e.g. request {waiting[0].rid}, {waiting[0].prompt} prompt tokens)" \
            if waiting else ""
        raise InputError(f"the run stalled at {time / 1e9:.3f} s: instance {inst.index} holds "
                         f"{len(waiting)} unfinished request(s){first} but its scheduler "
                         "forms no batch", f"instance {inst.index}",
                         "raise --max-num-seqs, --max-num-batched-tokens or the device memory, "
                         "or check a custom scheduler")

    def on_window(self, time: int, rates: tuple[float, float]) -> None:
        """Publish a closed log window."""
        for hook in self._window:
            hook(time, rates)

    def finish(self, result: SimResult) -> SimResult:
        """Publish the end of the run; return `result`."""
        for hook in self._finish:
            hook(result)
        return result

    def publish(self, event: str, request: Request, time: int, instance: int) -> None:
        """Publish one request event (callers skip this when nobody listens)."""
        for hook in self._request:
            hook(event, request, time, instance)

    def _poll_instant(self, time: int) -> int:
        """When an arrival at `time` is noticed: at once, or (compatibility, idle cluster) at
        the next 1 ms poll step after the last event."""
        if not self.idle_poll_ns or any(i.in_flight for i in self.instances):
            return time
        if time <= self.idle_since:
            return self.idle_since
        steps = -(-(time - self.idle_since) // self.idle_poll_ns)
        return self.idle_since + steps * self.idle_poll_ns

    def complete(self, inst: Instance, batch: Batch, time: int) -> int:
        """Apply a finished batch of `inst` at `time`; return how many requests finished."""
        inst.in_flight.remove(batch)
        done = inst.scheduler.update(batch, time)
        if inst.index in self.user_schedulers:
            check_user_finished(inst.scheduler, batch, done, self.trace_fields)
        self.counters.on_batch_done(batch)
        inst.completed += len(done)
        if self.check:
            check_instance(inst)
            for request in done:
                check_finished(request)
        if self._request:
            for request in batch.prompt_done:
                self.publish("first_token", request, time, inst.index)
            for request in done:
                self.publish("finished", request, time, inst.index)
        for hook in self._batch_end:
            hook(inst, batch, time, done)
        return len(done)

    def pass_on(self, batch: Batch, time: int) -> list[int]:
        """P/D: requests whose prompt finished in `batch` go to decode instances (their KV
        transfer is part of the finished iteration); return the receiving instances."""
        targets = []
        for request in batch.handoff:
            target = self.decode_router.route(request, self.decoders)
            request.instance = target.index
            target.scheduler.add(request)
            targets.append(target.index)
            if self._request:
                self.publish("handoff", request, time, target.index)
        return targets

    def arrive(self, request: Request) -> int:
        """Route an arrived request; return the chosen instance's index."""
        if self._request:
            self.publish("arrival", request, request.arrival, -1)
        inst = self.router.route(request, self.candidates)
        request.instance = request.routed_instance = inst.index
        inst.scheduler.add(request)
        if self._request:
            self.publish("routed", request, request.arrival, inst.index)
        return inst.index

    def _start_batch(self, inst: Instance, now: int) -> int:
        # Up to pp batches in flight; a new one enters when the first stage is free.
        if len(inst.in_flight) >= inst.spec.pp or inst.stage_free[0] > now or \
                not inst.scheduler.num_requests():
            return 0
        batch = inst.scheduler.schedule(now)
        if batch is None:
            return 0
        if inst.index in self.user_schedulers:
            check_user_batch(inst.scheduler, batch)
        inst.in_flight.append(batch)
        first_stage_end, end, costs = inst.pipeline(batch, now)
        duration = end - now
        if duration > self.longest_ns:
            self.longest_ns = duration
        for hook in self._batch_start:
            hook(inst, batch, now, end, costs)
        if self._request:
            for request in batch.preempted:
                self.publish("preempted", request, now, inst.index)
        if self.debug:
            self.log.now_ns = now
            decodes = sum(batch.decode)
            self.log.debug("Scheduler", f"batch {batch.batch_id}: {len(batch.requests)} reqs "
                           f"({decodes} decodes), {batch.total_tokens} tokens, {duration} ns, "
                           f"{inst.kv.free_blocks} free KV blocks", node=inst.spec.node_id,
                           inst=inst.index)
        if batch.num_preempted:
            self.log.now_ns = now
            self.log.info("Scheduler", f"preempted {batch.num_preempted} request(s) for KV space",
                          node=inst.spec.node_id, inst=inst.index)
        self._push(end, DONE, (inst, batch))
        if inst.spec.pp > 1:
            self._push(first_stage_end, WAKE, inst.index)
        return 1
