"""The instance `placement` block (formats.md §1.5): where each operator's weights live.

Locations are written case-insensitively as `npu…` (device memory), `cpu` (host memory of the
instance's node) or `cxl:<k>` (device k of the top-level `cxl_mem` pool) and are kept in that
canonical lower-case form. Priority when resolving one operator of one block:
layer rule > block rule > default; a layer rule's unset `weights` falls back to the default.
`kv_evict_loc` only acts through the default (swap traffic); `kv_loc` is validated and has no
effect (a kv_loc off the device draws a warning).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llmsim_core.errors import InputError

NPU, CPU = "npu", "cpu"
RULE_KEYS = ("weights", "kv_loc", "kv_evict_loc")
# Operator names a `layers` rule may name (formats.md §1.5, plus the q/k norm of Qwen3-style
# blocks).
OPERATORS = ("embedding", "input_layernorm", "q_proj", "k_proj", "v_proj", "qk_norm", "rope",
             "attn", "o_proj", "post_layernorm", "gate_proj", "up_proj", "act_fn", "down_proj",
             "gate", "expert", "final_layernorm", "lm_head")
EDGE_BLOCK = -1  # the block index of the operators before and after the transformer blocks
_FIX = "fix the placement block (spec/formats.md §1.5)"
_NPU_NAME = re.compile(r"npu:?[0-9]*")  # npu, npu0, npu:0


def cxl_device(location: str) -> int | None:
    """The CXL device index of a canonical location, None if it is not on CXL."""
    return int(location[4:]) if location.startswith("cxl:") else None


def parse_location(value: Any, where: str, cxl_devices: int | None) -> str:
    """Canonical form of one location string; every location must exist in the cluster."""
    if not isinstance(value, str):
        raise InputError(f"location {value!r} is not a string", where,
                         "use \"npu\", \"cpu\" or \"cxl:<k>\"")
    text = value.strip().lower()
    if _NPU_NAME.fullmatch(text):
        return NPU
    if text == CPU:
        return CPU
    if text.startswith("cxl"):
        index = text[4:] if text[3:4] == ":" else ""
        if not (index.isascii() and index.isdigit()):
            raise InputError(f"CXL location {value!r} has no device index", where,
                             "write the device explicitly, e.g. \"cxl:0\"")
        if cxl_devices is None:
            raise InputError(f"location {value!r} needs the top-level cxl_mem pool, which the "
                             "cluster config does not define", where,
                             "add \"cxl_mem\" at the top level or place the weights elsewhere")
        if int(index) >= cxl_devices:
            raise InputError(f"CXL device {int(index)} does not exist (cxl_mem has "
                             f"{cxl_devices} device(s), 0..{cxl_devices - 1})", where,
                             "use an existing device index or raise cxl_mem.num_devices")
        return f"cxl:{int(index)}"
    raise InputError(f"unknown location {value!r}", where,
                     "use \"npu\", \"cpu\" or \"cxl:<k>\"")


def parse_ranges(expr: Any, where: str) -> tuple[tuple[int, int], ...]:
    """`"0-3,5,7-9"` as inclusive (low, high) pairs (a > b is swapped). Unlike the existing
    simulator, which drops malformed parts silently, a malformed part is an error."""
    if isinstance(expr, int) and not isinstance(expr, bool):
        expr = str(expr)
    if not isinstance(expr, str) or not expr.strip():
        raise InputError(f"block range {expr!r} is not a non-empty string", where,
                         "write block indices like \"0-3,5,7-9\"")
    ranges = []
    for part in expr.split(","):
        bounds = [b.strip() for b in part.split("-")]
        if not 1 <= len(bounds) <= 2 or not all(b.isascii() and b.isdigit() for b in bounds):
            raise InputError(f"malformed block range part {part.strip()!r} in {expr!r}", where,
                             "use comma-separated block indices and inclusive ranges a-b")
        # Any index beyond 18 digits is out of range (checked later); int() of thousands of
        # digits would fail on Python's conversion limit.
        low, high = (int(b) if len(b) <= 18 else 10**18 for b in (bounds[0], bounds[-1]))
        ranges.append((min(low, high), max(low, high)))
    return tuple(ranges)


@dataclass(frozen=True, slots=True)
class BlockRule:
    """One `blocks` rule: its block ranges and the keys it sets (None = unset)."""

    ranges: tuple[tuple[int, int], ...]
    weights: str | None
    where: str


@dataclass(frozen=True, slots=True)
class Placement:
    """A parsed `placement` block (locations canonical, block ranges not yet resolved)."""

    weights: str = NPU
    kv_loc: str = NPU
    kv_evict_loc: str = CPU
    blocks: tuple[BlockRule, ...] = ()
    layers: tuple[tuple[str, str], ...] = ()  # (operator, weights location)
    # Rules whose kv_loc is not the device: accepted as upstream does, but without effect.
    idle_kv_loc: tuple[str, ...] = ()

    def resolve(self, num_layers: int, operators: tuple[str, ...], where: str) -> WeightMap:
        """Per-block and per-operator weight locations of a model with `num_layers` blocks and
        the given operators (a rule naming a block or operator the model lacks is an error)."""
        for op, _ in self.layers:
            if op not in operators:
                raise InputError(f"placement names operator '{op}', which this model's "
                                 "iteration does not run", f"placement.layers.{op} of {where}",
                                 "use one of " + ", ".join(operators))
        per_block = None
        if self.blocks:
            per_block = [self.weights] * num_layers
            for rule in self.blocks:
                for low, high in rule.ranges:
                    if high >= num_layers:
                        raise InputError(f"block {high} is out of range: the model has blocks "
                                         f"0..{num_layers - 1}", f"{rule.where} of {where}",
                                         "use block indices below num_hidden_layers")
                    if rule.weights is not None:
                        per_block[low:high + 1] = [rule.weights] * (high - low + 1)
        return WeightMap(self.weights, None if per_block is None else tuple(per_block),
                         dict(self.layers))


@dataclass(frozen=True, slots=True)
class WeightMap:
    """Resolved weight locations: `per_block` is set in block mode (every block its own)."""

    default: str
    per_block: tuple[str, ...] | None
    layers: Mapping[str, str]

    @property
    def block_mode(self) -> bool:
        """True when block rules exist: every transformer block is generated individually."""
        return self.per_block is not None

    @property
    def offloaded(self) -> bool:
        """True when some weights live off the device."""
        return any(loc != NPU for loc in (self.default, *(self.per_block or ()),
                                          *self.layers.values()))

    def of(self, op: str, block: int) -> str:
        """Location of operator `op`'s weights in `block` (EDGE_BLOCK outside the blocks)."""
        loc = self.layers.get(op)
        if loc is not None:
            return loc
        if self.per_block is not None and block >= 0:
            return self.per_block[block]
        return self.default


def parse_placement(raw: Any, where: str, cxl_devices: int | None) -> Placement:
    """Validate one instance's `placement` object (`where` names it in errors)."""
    if not isinstance(raw, dict):
        raise InputError("placement is not a JSON object", where, _FIX)
    _known(raw, ("default", "blocks", "layers"), where)
    default = raw.get("default", {})
    values = _rule(default, f"{where}.default", cxl_devices)
    weights = values.get("weights", NPU)
    evict = values.get("kv_evict_loc", CPU)
    if evict == NPU:
        raise InputError("kv_evict_loc 'npu' would swap KV onto the device it leaves",
                         f"{where}.default.kv_evict_loc", "use \"cpu\" or \"cxl:<k>\"")
    blocks_raw = raw.get("blocks", [])
    if not isinstance(blocks_raw, list):
        raise InputError("placement.blocks is not a list", f"{where}.blocks", _FIX)
    blocks = []
    idle_kv_loc = [f"{where}.default.kv_loc"] if values.get("kv_loc", NPU) != NPU else []
    for k, rule in enumerate(blocks_raw):
        at = f"{where}.blocks[{k}]"
        if not isinstance(rule, dict) or "blocks" not in rule:
            raise InputError("a block rule needs a \"blocks\" range expression", at, _FIX)
        _known(rule, ("blocks", *RULE_KEYS), at)
        set_ = _rule({k: v for k, v in rule.items() if k != "blocks"}, at, cxl_devices)
        _only_default_evicts(set_, evict, at)
        if set_.get("kv_loc", NPU) != NPU:
            idle_kv_loc.append(f"{at}.kv_loc")
        blocks.append(BlockRule(parse_ranges(rule["blocks"], f"{at}.blocks"),
                                set_.get("weights"), at))
    layers_raw = raw.get("layers", {})
    if not isinstance(layers_raw, dict):
        raise InputError("placement.layers is not a JSON object", f"{where}.layers", _FIX)
    layers = []
    for op, rule in layers_raw.items():
        at = f"{where}.layers.{op}"
        if op not in OPERATORS:
            raise InputError(f"unknown operator '{op}'", at, "use one of " + ", ".join(OPERATORS))
        set_ = _rule(rule, at, cxl_devices)
        _only_default_evicts(set_, evict, at)
        if set_.get("kv_loc", NPU) != NPU:
            idle_kv_loc.append(f"{at}.kv_loc")
        if set_:  # an empty rule leaves the operator to the block rules, as upstream does
            layers.append((op, set_.get("weights", weights)))
    return Placement(weights, values.get("kv_loc", NPU), evict, tuple(blocks), tuple(layers),
                     tuple(idle_kv_loc))


def _known(raw: dict, keys: tuple[str, ...], where: str) -> None:
    for key in raw:
        if key not in keys:
            raise InputError(f"unknown key '{key}'", where, "use " + ", ".join(keys))


def _rule(raw: Any, where: str, cxl_devices: int | None) -> dict[str, str]:
    """The keys one rule sets, as canonical locations."""
    if not isinstance(raw, dict):
        raise InputError("a placement rule is not a JSON object", where, _FIX)
    _known(raw, RULE_KEYS, where)
    return {key: parse_location(value, f"{where}.{key}", cxl_devices)
            for key, value in raw.items()}


def _only_default_evicts(values: dict[str, str], evict: str, where: str) -> None:
    """Swapped KV goes to the default's kv_evict_loc: a rule asking for another is refused."""
    if values.get("kv_evict_loc", evict) != evict:
        raise InputError(f"kv_evict_loc {values['kv_evict_loc']!r} differs from the default's "
                         f"{evict!r}, but only the default's is used", f"{where}.kv_evict_loc",
                         "set kv_evict_loc in placement.default only")
