"""Workload layer: dependency-driven replay of per-NPU Chakra graphs (engine.md §3).

Issue rules: at most one GPU compute, one CPU compute and one communication node (collective
or send) in flight per NPU; receives, memory and PIM nodes are exempt. A memory node that names
a process group (`pg_name`, extension) is one joint access of the group: the members' accesses
are served back to back once the last member has issued it, and complete together (how a host
driver feeds or drains the TP ranks of one instance); without `pg_name` each access is its own.
Ready nodes are issued in the order they became ready, ties by node id. Collectives are matched
across NPUs by group and sequence number and run step by step (closed form when all participants
start together on the congestion-unaware network).
"""

from __future__ import annotations

import heapq
from collections import defaultdict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from astra_sim.chakra_et import COLLECTIVE_TYPES, Node
from astra_sim.collective_steps import run_collective
from astra_sim.collectives import collective_ns
from astra_sim.memory import REMOTE, MemorySystem
from astra_sim.network import Network
from astra_sim.system import SystemConfig
from astra_sim.topology import Dimension, coordinates

COLLECTIVE_KINDS = {COLLECTIVE_TYPES["ALL_REDUCE"]: "all_reduce",
                    COLLECTIVE_TYPES["ALL_GATHER"]: "all_gather",
                    COLLECTIVE_TYPES["REDUCE_SCATTER"]: "reduce_scatter",
                    COLLECTIVE_TYPES["ALL_TO_ALL"]: "all_to_all"}
BROADCAST = COLLECTIVE_TYPES["BROADCAST"]
GPU, CPU, COMM = 0, 1, 2
PROGRAM_CACHE = 4096  # chain programs kept per engine before the cache starts over


class GraphError(ValueError):
    """The graphs cannot be replayed (cycle, dangling dependency, unknown collective...)."""


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Everything that shapes timing: network, system layer, duration units, roofline."""

    dims: tuple[Dimension, ...]
    system: SystemConfig = SystemConfig()
    aware: bool = False
    duration_unit_ns: int = 1  # casys: ns in duration_micros; upstream: 1000
    roofline: bool = False
    peak_tflops: float = 0.0
    comm_groups: Mapping[str, tuple[int, ...]] = field(default_factory=dict)


@dataclass(slots=True)
class ReplayResult:
    """Absolute finish tick and exposed communication (finish − compute) per NPU."""

    finish_ns: dict[int, int]
    exposed_comm_ns: dict[int, int]


@dataclass(slots=True)
class _NpuState:
    nodes: dict[int, Node]
    waiting_parents: dict[int, int]
    children: dict[int, list[int]]
    ready: list[tuple[int, int, int]] = field(default_factory=list)  # (ready time, seq, id)
    busy: list[bool] = field(default_factory=lambda: [False, False, False])
    remaining: int = 0
    compute_ns: int = 0
    finish: int = 0


def _deps(node: Node) -> list[int]:
    return list(dict.fromkeys([*node.data_deps, *node.ctrl_deps]))


def validate_graph(npu: int, nodes: Sequence[Node]) -> None:
    """Unique ids, dependencies present in the same graph, no cycles."""
    ids = {}
    for node in nodes:
        if node.id in ids:
            raise GraphError(f"NPU {npu}: duplicate node id {node.id}")
        ids[node.id] = node
    indegree = {nid: 0 for nid in ids}
    children = defaultdict(list)
    for node in nodes:
        for dep in _deps(node):
            if dep not in ids:
                raise GraphError(f"NPU {npu}: node {node.id} ({node.name}) depends on missing "
                                 f"node {dep}")
            indegree[node.id] += 1
            children[dep].append(node.id)
    queue = deque(nid for nid, deg in indegree.items() if deg == 0)
    seen = 0
    while queue:
        nid = queue.popleft()
        seen += 1
        for child in children[nid]:
            indegree[child] -= 1
            if indegree[child] == 0:
                queue.append(child)
    if seen != len(ids):
        raise GraphError(f"NPU {npu}: the graph has a dependency cycle")


class Engine:
    """Replays per-NPU graphs on one clock; network and memory state persist across calls."""

    def __init__(self, config: EngineConfig, memory: MemorySystem | None = None,
                 collective_model: Callable[[str, int, tuple[bool, ...] | None], int]
                 | None = None) -> None:
        self.config = config
        # A packet-level network (ns-3) may time the lockstep collectives instead of the
        # analytical closed forms: (kind, bytes, involved dimensions) -> ns.
        self.collective_model = collective_model
        self.network = Network(config.dims, config.aware)
        self.memory = memory if memory is not None else MemorySystem()
        self.member_cache: dict[tuple, tuple] = {}
        self._programs: dict[int, tuple[Sequence[Node], list[tuple] | None]] = {}
        self._lockstep_cache: dict[int, tuple[Sequence[Node], tuple[int, ...], bool]] = {}

    def replay(self, graphs: Mapping[int, Sequence[Node]], start: int = 0,
               fast: bool = True, symmetric: bool = False) -> ReplayResult:
        """Run every NPU's graph from `start`; return per-NPU finish times.

        With `fast`, NPUs whose graphs are identical (the same list, or equal node by node;
        with `symmetric` the caller vouches that they are, up to the endpoints of their
        point-to-point messages) and share no resource but joint memory accesses run in
        lockstep: one NPU is evaluated with closed-form collectives and its times hold for all
        (engine.md §11).
        """
        if fast and self._lockstep(graphs, symmetric):
            first = next(iter(graphs))
            chain = self._chain_ns(first, graphs[first], start)
            if chain is not None:
                total, compute = chain
                return ReplayResult({n: start + total for n in graphs},
                                    {n: total - compute for n in graphs})
            solo = _Replay(self, {first: graphs[first]}, start, solo=True).execute()
            return ReplayResult({n: solo.finish_ns[first] for n in graphs},
                                {n: solo.exposed_comm_ns[first] for n in graphs})
        return _Replay(self, graphs, start).execute()

    def collective_time(self, kind: str, size: int, involved: tuple[bool, ...] | None) -> int:
        """Lockstep time of one collective: the collective model's, else the closed form."""
        if self.collective_model is not None:
            return self.collective_model(kind, size, involved)
        return collective_ns(kind, size, self.config.dims, self.config.system, involved)

    def joint_members(self, node: Node) -> tuple[int, ...] | None:
        """Members of the group whose joint access a memory node is (None: a plain access)."""
        group = str(node.attr("pg_name", "") or "")
        members = self.config.comm_groups.get(group) if group else None
        return tuple(sorted(members)) if members else None

    def _chain_ns(self, npu: int, nodes: Sequence[Node], start: int = 0
                  ) -> tuple[int, int] | None:
        """(total, GPU compute) of a lockstep graph shaped as a chain, started at `start`, else
        None. The shape: memory loads without dependencies (issued at the start, in order),
        then a chain of compute and collectives that waits for all of them, with sends and
        memory stores hanging off the chain (nothing depends on them). A send holds the NPU's
        communication slot until it arrives; the next collective waits for the slot.

        The shape is checked once per graph object (its compute durations are read at every
        call, so a caller may replay one graph with new durations).
        """
        program = self._program(npu, nodes)
        if program is None:
            return None
        probe = _Replay(self, {}, 0, solo=True)
        # casys durations are ns as written: read them straight off the node.
        plain = not self.config.roofline and self.config.duration_unit_ns == 1
        released = start
        t = comm_free = finish = start
        compute = 0
        for step in program:
            op = step[0]
            if op == "comp":
                duration = step[1].duration_micros if plain else probe.compute_ns(step[1])
                t += duration
                if step[2]:
                    compute += duration
            elif op == "coll":
                t = max(t, comm_free) + step[1]
                comm_free = t
            elif op == "send":
                comm_free = self.network.deliver(step[1], step[2], step[3], max(t, comm_free))
                finish = max(finish, comm_free)
            elif op == "load":
                released = max(released, probe.memory_done(npu, step[1], start, step[2]))
            elif op == "go":
                t = comm_free = finish = released
            else:  # store
                finish = max(finish, probe.memory_done(npu, step[1], t, step[2]))
        if program and program[-1][0] == "load":
            t = released
        return max(t, finish) - start, compute

    def _program(self, npu: int, nodes: Sequence[Node]) -> list[tuple] | None:
        """The chain steps of a graph (memoized per graph object), or None for another shape."""
        cached = self._programs.get(id(nodes))
        if cached is not None and cached[0] is nodes:
            return cached[1]
        roots: list[int] = []
        anchor: int | None = None
        program: list[tuple] | None = []
        for node in nodes:
            deps = _deps(node)
            kind = node.type
            memory = kind in ("MEM_LOAD_NODE", "MEM_STORE_NODE")
            members = self.joint_members(node) if memory else None
            repeat = len(members) if members else 1
            if memory and not deps and anchor is None:
                program.append(("load", node, repeat))
                roots.append(node.id)
                continue
            if sorted(deps) != (sorted(roots) if anchor is None else [anchor]):
                program = None
                break
            if anchor is None and kind in ("COMP_NODE", "COMM_COLL_NODE"):
                program.append(("go",))
            if kind == "COMP_NODE":
                program.append(("comp", node, not node.attr("is_cpu_op", False)))
                anchor = node.id
            elif kind == "COMM_COLL_NODE":
                coll = COLLECTIVE_KINDS.get(int(node.attr("comm_type", 0) or 0))
                if coll is None:
                    program = None
                    break
                involved = _Replay.members_of(self, npu, node)[1]
                program.append(("coll", self.collective_time(
                    coll, int(node.attr("comm_size", 0) or 0), involved)))
                anchor = node.id
            elif kind == "COMM_SEND_NODE" and anchor is not None:
                src, dst, _, size = _Replay._p2p_key(node)
                program.append(("send", src, dst, size))
            elif memory and anchor is not None:
                program.append(("store", node, repeat))
            else:
                program = None
                break
        if len(self._programs) >= PROGRAM_CACHE:
            self._programs.clear()
        self._programs[id(nodes)] = (nodes, program)
        return program

    def _lockstep(self, graphs: Mapping[int, Sequence[Node]], symmetric: bool = False) -> bool:
        if self.config.aware or not graphs:
            return False
        lists = list(graphs.values())
        first = lists[0]
        if not symmetric and any(g is not first and g != first for g in lists[1:]):
            return False
        npus = tuple(sorted(graphs))
        cached = self._lockstep_cache.get(id(first))
        if cached is not None and cached[0] is first and cached[1] == npus:
            return cached[2]
        verdict = self._lockstep_shape(first, npus)
        if len(self._lockstep_cache) >= PROGRAM_CACHE:
            self._lockstep_cache.clear()
        self._lockstep_cache[id(first)] = (first, npus, verdict)
        return verdict

    def _lockstep_shape(self, first: Sequence[Node], npus: tuple[int, ...]) -> bool:
        """Whether identical graphs on `npus` share nothing but joint accesses (structural:
        memoized per graph object)."""
        queued = {loc for loc, tier in self.memory.tiers.items() if tier.queued}
        for node in first:
            if node.type in ("COMM_RECV_NODE", "PIM_COMP_NODE"):
                return False
            if node.type in ("MEM_LOAD_NODE", "MEM_STORE_NODE") and len(npus) > 1 and \
                    int(node.attr("tensor_loc", REMOTE) or REMOTE) in queued and \
                    self.joint_members(node) != npus:
                return False  # ranks of one FIFO served one after another drift apart
            if node.type == "COMM_COLL_NODE":
                kind = COLLECTIVE_KINDS.get(int(node.attr("comm_type", 0) or 0))
                # Double-Binary-Tree has no closed form: ranks finish at different times.
                if kind is None or "doubleBinaryTree" in self.config.system.algorithms(kind):
                    return False
                members = _Replay.members_of(self, npus[0], node)[0]
                if members != npus:
                    return False
        return True


class _Replay:
    """One replay: event heap, per-NPU issue state, pending collectives and messages."""

    def __init__(self, engine: Engine, graphs: Mapping[int, Sequence[Node]], start: int,
                 solo: bool = False) -> None:
        self.engine = engine
        self.solo = solo
        self.cfg = engine.config
        self.start = start
        self.heap: list[tuple[int, int, tuple]] = []
        self.seq = 0
        self.npus: dict[int, _NpuState] = {}
        for npu, nodes in graphs.items():
            if not 0 <= npu < self.engine.network.num_npus:
                raise GraphError(f"graph for NPU {npu} but the network has "
                                 f"{self.engine.network.num_npus} NPUs")
            validate_graph(npu, nodes)
            state = _NpuState({n.id: n for n in nodes}, {}, defaultdict(list),
                              remaining=len(nodes), finish=start)
            for node in nodes:
                deps = _deps(node)
                state.waiting_parents[node.id] = len(deps)
                for dep in deps:
                    state.children[dep].append(node.id)
            self.npus[npu] = state
        self.coll_seq: dict[tuple[int, tuple], int] = defaultdict(int)
        self.pending_coll: dict[tuple, dict[int, tuple[int, int]]] = {}
        self.messages: dict[tuple, deque[int]] = defaultdict(deque)
        self.joint_seq: dict[tuple[int, tuple], int] = defaultdict(int)
        self.pending_joint: dict[tuple, dict[int, tuple[int, int]]] = {}
        self.posted_recvs: dict[tuple, deque[tuple[int, int]]] = defaultdict(deque)

    # --- event plumbing -------------------------------------------------------------------
    def push(self, time: int, event: tuple) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (time, self.seq, event))

    def mark_ready(self, npu: int, node_id: int, time: int) -> None:
        state = self.npus[npu]
        self.seq += 1
        heapq.heappush(state.ready, (time, node_id, self.seq))

    def execute(self) -> ReplayResult:
        for npu, state in self.npus.items():
            for nid, count in state.waiting_parents.items():
                if count == 0:
                    self.mark_ready(npu, nid, self.start)
            self.issue(npu, self.start)
        while self.heap:
            time, _, event = heapq.heappop(self.heap)
            kind = event[0]
            if kind == "done":
                self.complete(event[1], event[2], time, event[3])
            elif kind == "arrive":
                self.arrive(event[1], time)
        stuck = [npu for npu, s in self.npus.items() if s.remaining]
        if stuck:
            raise GraphError(f"replay stalled: NPU(s) {stuck} have unfinished nodes (unmatched "
                             "send/receive or a collective some participant never issues)")
        return ReplayResult({n: s.finish for n, s in self.npus.items()},
                            {n: s.finish - self.start - s.compute_ns
                             for n, s in self.npus.items()})

    # --- issuing ------------------------------------------------------------------------------
    def issue(self, npu: int, now: int) -> None:
        state = self.npus[npu]
        blocked = []
        while state.ready:
            entry = heapq.heappop(state.ready)
            node = state.nodes[entry[1]]
            resource = self.resource(node)
            if resource is not None and state.busy[resource]:
                blocked.append(entry)
                continue
            self.start_node(npu, node, resource, now)
        for entry in blocked:
            heapq.heappush(state.ready, entry)

    def resource(self, node: Node) -> int | None:
        if node.type == "COMP_NODE":
            return CPU if node.attr("is_cpu_op", False) else GPU
        if node.type in ("COMM_COLL_NODE", "COMM_SEND_NODE"):
            return COMM
        return None

    def start_node(self, npu: int, node: Node, resource: int | None, now: int) -> None:
        state = self.npus[npu]
        if resource is not None:
            state.busy[resource] = True
        kind = node.type
        if kind == "COMP_NODE":
            duration = self.compute_ns(node)
            if resource == GPU:
                state.compute_ns += duration
            self.push(now + duration, ("done", npu, node.id, resource))
        elif kind in ("MEM_LOAD_NODE", "MEM_STORE_NODE"):
            self.memory(npu, node, now)
        elif kind == "PIM_COMP_NODE":
            self.push(self.memory_done(npu, node, now), ("done", npu, node.id, None))
        elif kind == "COMM_SEND_NODE":
            self.send(npu, node, now)
        elif kind == "COMM_RECV_NODE":
            self.post_recv(npu, node, now)
        elif kind == "COMM_COLL_NODE":
            self.collective(npu, node, now)
        else:  # METADATA / INVALID: no timing
            self.push(now, ("done", npu, node.id, resource))

    def compute_ns(self, node: Node) -> int:
        cfg = self.cfg
        if cfg.roofline and not node.attr("is_cpu_op", False):
            num_ops = int(node.attr("num_ops", 0) or 0)
            size = int(node.attr("tensor_size", 0) or 0)
            if size == 0:
                return 0
            intensity = num_ops / size
            perf = min(cfg.system.local_mem_bw * 1e9 * intensity, cfg.peak_tflops * 1e12)
            return int(num_ops / perf * 1e9) if perf else 0
        if cfg.duration_unit_ns == 1:
            return node.duration_micros  # casys: ns; 0 duration and 0 ops is skipped
        return max(node.duration_micros * cfg.duration_unit_ns, 1)

    def memory(self, npu: int, node: Node, now: int) -> None:
        """A memory node: its own access, or its share of a joint access of its group."""
        members = self.engine.joint_members(node)
        if members is None or len(members) == 1 or self.solo:
            end = self.memory_done(npu, node, now, len(members) if members else 1)
            self.push(end, ("done", npu, node.id, None))
            return
        seq_key = (npu, members)
        key = (members, self.joint_seq[seq_key])
        self.joint_seq[seq_key] += 1
        pending = self.pending_joint.setdefault(key, {})
        pending[npu] = (now, node.id)
        if len(pending) < len(members):
            return
        del self.pending_joint[key]
        end = self.memory_done(npu, node, max(t for t, _ in pending.values()), len(members))
        for member, (_, node_id) in pending.items():
            self.push(end, ("done", member, node_id, None))

    def memory_done(self, npu: int, node: Node, now: int, repeat: int = 1) -> int:
        size = int(node.attr("tensor_size", 0) or 0)
        loc = int(node.attr("tensor_loc", REMOTE) or REMOTE)
        device = int(node.attr("tensor_device", 0) or 0)
        try:
            if node.type == "PIM_COMP_NODE":
                channel = int(node.attr("tensor_channel", 0) or 0)
                return self.engine.memory.access(npu, now, size, loc, device, channel,
                                                 extra_ns=node.duration_micros)
            return self.engine.memory.access(npu, now, size, loc, device, repeat=repeat)
        except ValueError as exc:
            raise GraphError(f"NPU {npu} node {node.id} ({node.name}): {exc}") from None

    # --- point to point ------------------------------------------------------------------------
    @staticmethod
    def _p2p_key(node: Node) -> tuple:
        return (int(node.attr("comm_src", 0) or 0), int(node.attr("comm_dst", 0) or 0),
                int(node.attr("comm_tag", 0) or 0), int(node.attr("comm_size", 0) or 0))

    def send(self, npu: int, node: Node, now: int) -> None:
        key = self._p2p_key(node)
        if key[0] != npu:
            raise GraphError(f"NPU {npu} node {node.id}: send with comm_src {key[0]}")
        arrival = self.engine.network.deliver(key[0], key[1], key[3], now)
        self.push(arrival, ("done", npu, node.id, COMM))
        self.push(arrival, ("arrive", key))

    def arrive(self, key: tuple, time: int) -> None:
        waiting = self.posted_recvs[key]
        if waiting:
            npu, node_id = waiting.popleft()
            self.push(time, ("done", npu, node_id, None))
        else:
            self.messages[key].append(time)

    def post_recv(self, npu: int, node: Node, now: int) -> None:
        key = self._p2p_key(node)
        if key[1] != npu:
            raise GraphError(f"NPU {npu} node {node.id}: receive with comm_dst {key[1]}")
        if self.messages[key]:
            arrived = self.messages[key].popleft()
            self.push(max(now, arrived), ("done", npu, node.id, None))
        else:
            self.posted_recvs[key].append((npu, node.id))

    # --- collectives ---------------------------------------------------------------------------
    @staticmethod
    def members_of(engine: Engine, npu: int, node: Node
                   ) -> tuple[tuple[int, ...], tuple[bool, ...] | None]:
        """Participants of a collective issued on `npu`, and the dimensions it involves."""
        key = (npu, str(node.attr("pg_name", "") or ""), tuple(node.attr("involved_dim") or ()))
        cached = engine.member_cache.get(key)
        if cached is None:
            cached = _Replay._find_members(engine, npu, node)
            engine.member_cache[key] = cached
        return cached

    @staticmethod
    def _find_members(engine: Engine, npu: int, node: Node
                      ) -> tuple[tuple[int, ...], tuple[bool, ...] | None]:
        dims = engine.config.dims
        group = str(node.attr("pg_name", "") or "")
        if group not in ("", "0") and group in engine.config.comm_groups:
            members = tuple(sorted(engine.config.comm_groups[group]))
            coords = [coordinates(m, dims) for m in members]
            involved = tuple(len({c[i] for c in coords}) > 1 for i in range(len(dims)))
            return members, involved
        involved = node.attr("involved_dim")
        involved = tuple(bool(v) for v in involved) if involved else None
        mine = coordinates(npu, dims)
        members = []
        for other in range(engine.network.num_npus):
            theirs = coordinates(other, dims)
            if all(a == b or (involved is None or (i < len(involved) and involved[i]))
                   for i, (a, b) in enumerate(zip(mine, theirs, strict=True))):
                members.append(other)
        return tuple(members), involved

    def members(self, npu: int, node: Node) -> tuple[tuple[int, ...], tuple[bool, ...] | None]:
        return self.members_of(self.engine, npu, node)

    def collective(self, npu: int, node: Node, now: int) -> None:
        comm_type = int(node.attr("comm_type", 0) or 0)
        size = int(node.attr("comm_size", 0) or 0)
        if comm_type == BROADCAST:
            self.push(now + node.duration_micros, ("done", npu, node.id, COMM))
            return
        kind = COLLECTIVE_KINDS.get(comm_type)
        if kind is None:
            raise GraphError(f"NPU {npu} node {node.id}: unsupported collective type "
                             f"{comm_type}")
        members, involved = self.members(npu, node)
        if self.solo:
            duration = self.engine.collective_time(kind, size, involved)
            self.push(now + duration, ("done", npu, node.id, COMM))
            return
        seq_key = (npu, (kind, members))
        index = self.coll_seq[seq_key]
        self.coll_seq[seq_key] += 1
        key = (kind, members, index)
        pending = self.pending_coll.setdefault(key, {})
        pending[npu] = (now, node.id)
        if len(pending) < len(members):
            return
        del self.pending_coll[key]
        issue = {m: t for m, (t, _) in pending.items()}
        cfg = self.cfg
        algorithms = cfg.system.algorithms(kind)
        closed_form = "doubleBinaryTree" not in algorithms
        # Aware collectives always replay hop by hop: they share the links' state with
        # every other message on the network.
        if closed_form and not cfg.aware and len(set(issue.values())) == 1:
            # Lockstep: every participant finishes at the closed-form time.
            duration = self.engine.collective_time(kind, size, involved)
            finish = {m: now + duration for m in members}
        else:
            try:
                finish = run_collective(kind, size, members, issue, self.engine.network,
                                        cfg.system, involved)
            except ValueError as exc:
                raise GraphError(f"collective {kind} on NPUs {members}: {exc}") from None
        for m, (_, node_id) in pending.items():
            self.push(max(finish[m], now), ("done", m, node_id, COMM))

    # --- completion -----------------------------------------------------------------------------
    def complete(self, npu: int, node_id: int, time: int, resource: int | None) -> None:
        state = self.npus[npu]
        if resource is not None:
            state.busy[resource] = False
        state.remaining -= 1
        state.finish = max(state.finish, time)
        for child in state.children.get(node_id, ()):
            state.waiting_parents[child] -= 1
            if state.waiting_parents[child] == 0:
                self.mark_ready(npu, child, time)
        self.issue(npu, time)
