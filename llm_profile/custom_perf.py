"""A user's own perf model (`--perf-model CUSTOM --custom-perf-model pkg.mod:Class`).

The class is constructed once per instance as `cls(hardware, model, tp, fp_bits)`: the
instance's `hardware` name from the cluster config, its `llmsim_core.model_config.ModelConfig`,
its TP degree and the bits per element. It implements `llm_profile.perf_model.PerfModel`:
`layer_ns(layer, tokens)` for every operator of the instance's op template and
`attention_ns(batch)` for one layer's attention, both in integer nanoseconds per TP rank. This is
where an outside cost model (an NPU simulator, a lookup service's table) plugs in; see
`examples/custom_perf_model.py`. Every answer is checked.
"""

from __future__ import annotations

from numbers import Integral

from llm_profile.perf_model import AttentionBatch, PerfModel
from llmsim_core.bounds import STEP_NS
from llmsim_core.errors import InputError
from llmsim_core.model_config import ModelConfig
from llmsim_core.plugins import construct, load_class, shown, user_code_failed


class CheckedPerfModel:
    """A user perf model whose latencies are checked to be integer nanoseconds >= 0."""

    def __init__(self, inner: PerfModel, where: str) -> None:
        self.inner = inner
        self.where = where
        self.name = self._label("name", type(inner).__name__)
        self.attention_source = self._label("attention_source", self.name)

    def _label(self, attr: str, default: str) -> str:
        """The user model's `attr` (shown in the run header): one printable line of text."""
        try:
            value = getattr(self.inner, attr, default)
        except BaseException as exc:  # a property of the user class failed
            raise user_code_failed(type(self.inner), attr, exc, self.where) from None
        if not isinstance(value, str) or not value.isprintable() or not 0 < len(value) <= 80:
            raise InputError(f"{type(self.inner).__name__}.{attr} is {shown(value, 60)}, not one "
                             "printable line of text", self.where,
                             f"set {attr} to a short string (at most 80 characters)")
        return value

    def _checked(self, value: object, call: str) -> int:
        number = -1
        if not isinstance(value, bool) and isinstance(value, Integral):
            try:
                number = int(value)  # a plain int: the user type's own operators may fail
            except BaseException:
                number = -1
        if number < 0:
            raise InputError(f"{type(self.inner).__name__}.{call} returned {shown(value, 60)}",
                             self.where, "return a latency in integer nanoseconds >= 0 "
                             "(round your model's output)")
        if number > STEP_NS.high:
            raise InputError(f"{type(self.inner).__name__}.{call} returned {number} ns, above "
                             f"{STEP_NS.high:g} ns ({STEP_NS.why})", self.where,
                             "return a latency in nanoseconds, not a larger unit")
        return number

    def layer_ns(self, layer: str, tokens: int) -> int:
        """The user model's latency of one operator call, checked."""
        try:
            value = self.inner.layer_ns(layer, tokens)
        except InputError:
            raise
        except BaseException as exc:  # user code (even sys.exit): one line
            raise user_code_failed(type(self.inner), "layer_ns", exc, self.where) from None
        return self._checked(value, f"layer_ns({layer!r}, {tokens})")

    def attention_ns(self, batch: AttentionBatch) -> int:
        """The user model's latency of one layer's attention, checked."""
        try:
            value = self.inner.attention_ns(batch)
        except InputError:
            raise
        except BaseException as exc:  # user code (even sys.exit): one line
            raise user_code_failed(type(self.inner), "attention_ns", exc, self.where) from None
        return self._checked(value, "attention_ns(...)")


def load_custom_perf_model(dotted: str, hardware: str, model: ModelConfig, tp: int,
                           fp_bits: int) -> PerfModel:
    """Load, construct and wrap the user's perf model class for one instance."""
    where = f"--custom-perf-model {dotted}"
    cls = load_class(dotted, "--custom-perf-model", PerfModel)
    return CheckedPerfModel(construct(cls, where, hardware, model, tp, fp_bits), where)
