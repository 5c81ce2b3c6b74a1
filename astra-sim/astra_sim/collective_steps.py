"""Step-level execution of a collective for participants that may start at different ticks.

Collectives are not barriers (engine.md §3.5): each participant runs the algorithm's steps,
sending as soon as it has the data and waiting only for the messages it needs. Per step a
message costs its network time plus the endpoint delay; reduce steps add the local-reduction
cost; each phase ends with one more endpoint delay. In lockstep this equals the closed forms.
On the congestion-aware network every message crosses the links hop by hop (links.py).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from astra_sim.collectives import collective_phases, reduction_ns
from astra_sim.network import Network
from astra_sim.system import SystemConfig
from astra_sim.topology import coordinates

# A step: (peer rule, message bytes, reduction ns after the step). Peer rules are
# ("offset", (k, ...)) = send to positions pos + k, or ("xor", mask) = send to pos ^ mask.
Step = tuple[tuple[str, object], int, int]


def phase_steps(algorithm: str, op: str, p: int, size: int, system: SystemConfig) -> list[Step]:
    """The steps of one phase on a group of `p` participants."""
    nxt = ("offset", (1,))
    if algorithm == "ring":
        m = size // p
        if op == "all_reduce":
            return [(nxt, m, reduction_ns(m, system))] * (p - 1) + [(nxt, m, 0)] * (p - 1)
        if op == "reduce_scatter":
            return [(nxt, m, reduction_ns(m, system))] * (p - 1)
        if op == "all_gather":
            return [(nxt, size, 0)] * (p - 1)
        return [(nxt, m, 0)] * (p * (p - 1) // 2)
    if algorithm == "direct":
        everyone = ("offset", tuple(range(1, p)))
        if op == "all_gather":
            return [(everyone, size, 0)]
        if op == "all_to_all":
            return [(everyone, size // p, 0)]
        rs = [(everyone, size // p, reduction_ns(size // p, system))]
        return rs if op == "reduce_scatter" else rs + [(everyone, size // p, 0)]
    if algorithm == "halvingDoubling":
        if p & (p - 1) or op == "all_to_all":
            raise ValueError("halvingDoubling needs a power-of-two group and no all-to-all")
        levels = p.bit_length() - 1
        # HalvingDoubling.cc: the largest message goes to the nearest partner. Reduce-scatter
        # starts at rank offset 1 with size/2 and doubles the offset as the message halves;
        # all-gather starts at offset p/2 with the per-rank input and halves the offset as
        # the message doubles; all-reduce is both, the second half in reverse.
        if op == "all_gather":
            return [(("xor", p >> (k + 1)), size << k, 0) for k in range(levels)]
        rs = [(("xor", 1 << (k - 1)), size >> k,
               reduction_ns(size >> k, system) if k >= 2 else 0) for k in range(1, levels + 1)]
        if op == "reduce_scatter":
            return rs
        return rs + [(("xor", 1 << (k - 1)), size >> k, 0) for k in range(levels, 0, -1)]
    raise ValueError(f"{algorithm} is not supported by the step-level engine")


def step_peers(rule: tuple[str, object], pos: int, p: int) -> list[tuple[int, int]]:
    """(send order, peer position) pairs of position `pos` in one step."""
    kind, arg = rule
    if kind == "xor":
        return [(0, pos ^ arg)]
    return [(k, (pos + k) % p) for k in arg]


def run_phase(group: list[int], steps: list[Step], ready: dict[int, int], network: Network,
              endpoint_delay: int) -> None:
    """Advance `ready` (per-NPU time) through one phase on one group, in place."""
    p = len(group)
    for rule, nbytes, reduction in steps:
        messages = sorted((ready[group[pos]], order, pos, peer)
                          for pos in range(p) for order, peer in step_peers(rule, pos, p))
        arrived = [0] * p
        for depart, _, pos, peer in messages:
            arrival = network.deliver(group[pos], group[peer], nbytes, depart) + endpoint_delay
            arrived[peer] = max(arrived[peer], arrival)
        for pos in range(p):
            npu = group[pos]
            ready[npu] = max(ready[npu], arrived[pos]) + reduction
    for npu in group:
        ready[npu] += endpoint_delay


def run_phase_aware(group: list[int], steps: list[Step], ready: dict[int, int],
                    network: Network, endpoint_delay: int) -> None:
    """Advance `ready` through one phase whose messages cross the aware links hop by hop.

    As in ASTRA-Sim's system layer (HalvingDoubling.cc, AllToAll.cc on top of Ring.cc), a
    participant sends its messages of step s as soon as it holds every message of step s - 1
    (plus endpoint delay and reduction), without a barrier: a fast participant's messages
    can meet a slow one's on a link, and each link serves them in arrival order. Messages
    leaving one NPU at the same tick are injected in peer order (+1, +2, ... for Direct).
    """
    p, n = len(group), len(steps)
    sim = network.link_sim()
    step_of = [0] * p
    time_of = [ready[npu] for npu in group]
    need = [len(step_peers(rule, 0, p)) for rule, _, _ in steps]
    got: dict[tuple[int, int], int] = defaultdict(int)
    latest: dict[tuple[int, int], int] = defaultdict(int)

    def enter(pos: int) -> None:
        # `pos` is ready at time_of[pos] for step step_of[pos]: send, then move on while
        # every message of the step is already in.
        while step_of[pos] < n:
            s = step_of[pos]
            rule, nbytes, reduction = steps[s]
            for _, peer in step_peers(rule, pos, p):
                sim.send(time_of[pos], group[pos], group[peer], nbytes, (peer, s))
            if got[pos, s] < need[s]:
                return
            time_of[pos] = max(time_of[pos], latest[pos, s]) + reduction
            step_of[pos] += 1
        ready[group[pos]] = time_of[pos] + endpoint_delay

    for pos in sorted(range(p), key=lambda q: (time_of[q], q)):
        enter(pos)
    while (delivery := sim.next_delivery()) is not None:
        arrival, (pos, s) = delivery
        got[pos, s] += 1
        latest[pos, s] = max(latest[pos, s], arrival + endpoint_delay)
        if step_of[pos] == s and got[pos, s] == need[s]:
            time_of[pos] = max(time_of[pos], latest[pos, s]) + steps[s][2]
            step_of[pos] += 1
            enter(pos)


def _tree_parent(pos: int, shift: int, p: int) -> int | None:
    """Parent position in a heap-shaped binary tree whose labels are rotated by `shift`."""
    label = (pos - shift) % p
    return None if label == 0 else ((label - 1) // 2 + shift) % p


def run_double_binary_tree(group: list[int], size: int, ready: dict[int, int],
                           network: Network, system: SystemConfig) -> None:
    """All-reduce over two binary trees, each carrying half the data (experimental).

    Per tree: every node waits for its children's partial sums (message + endpoint delay,
    then one local reduction per child), sends its sum to its parent; the root then
    broadcasts down. The trees are rotated by one position so interior nodes differ. There
    are no golden values for this algorithm (engine.md §4.5); it is event-driven because NPUs
    finish at different times.
    """
    p, ep = len(group), system.endpoint_delay
    half = size // 2
    start = {pos: ready[group[pos]] for pos in range(p)}
    finish = dict(start)
    for shift in (0, 1):
        parent = {pos: _tree_parent(pos, shift, p) for pos in range(p)}
        children = {pos: [c for c in range(p) if parent[c] == pos] for pos in range(p)}
        order = sorted(range(p), key=lambda q: -((q - shift) % p))  # leaves first
        up = dict(start)
        for pos in order:
            for child in children[pos]:
                arrival = network.deliver(group[child], group[pos], half, up[child]) + ep
                up[pos] = max(up[pos], arrival) + reduction_ns(half, system)
        down = {}
        for pos in reversed(order):
            if parent[pos] is None:
                down[pos] = up[pos]
            else:
                down[pos] = network.deliver(group[parent[pos]], group[pos], half,
                                            down[parent[pos]]) + ep
        for pos in range(p):
            finish[pos] = max(finish[pos], down[pos])
    for pos in range(p):
        ready[group[pos]] = finish[pos] + ep


def run_collective(kind: str, size: int, members: Sequence[int], issue: dict[int, int],
                   network: Network, system: SystemConfig,
                   involved: Sequence[bool] | None = None) -> dict[int, int]:
    """Per-participant completion times of a collective issued at `issue[npu]`."""
    dims = network.dims
    algorithms = system.algorithms(kind)
    usable = [(i, d, algorithms[i]) for i, d in enumerate(dims[:len(algorithms)])
              if d.npus > 1 and (involved is None or (i < len(involved) and involved[i]))]
    ready = dict(issue)
    if not usable:
        return ready
    splits = system.preferred_dataset_splits
    chunk = size // splits
    if chunk < network.num_npus and kind != "all_gather":
        chunk = network.num_npus
    coords = {npu: coordinates(npu, dims) for npu in members}
    index_of = {id(d): i for i, d, _ in usable}
    phases = collective_phases(kind, chunk, [(d, a) for _, d, a in usable],
                               system.collective_optimization)
    for _ in range(-(-splits // system.active_chunks_per_dimension)):
        for dim, algorithm, op, phase_size in phases:
            axis = index_of[id(dim)]
            groups: dict[tuple, list[int]] = {}
            for npu in members:
                c = coords[npu]
                groups.setdefault(c[:axis] + c[axis + 1:], []).append(npu)
            for group in groups.values():
                group.sort(key=lambda n: coords[n][axis])
                if algorithm == "doubleBinaryTree":
                    if op != "all_reduce":
                        raise ValueError("doubleBinaryTree implements all-reduce only")
                    run_double_binary_tree(group, phase_size, ready, network, system)
                    continue
                steps = phase_steps(algorithm, op, len(group), phase_size, system)
                phase = run_phase_aware if network.aware else run_phase
                phase(group, steps, ready, network, system.endpoint_delay)
    return ready
