"""Model architecture numbers read from an HF-style `model_config/<org>/<model>.json`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from llmsim_core.bounds import MODEL_DIM, checked_int
from llmsim_core.errors import InputError
from llmsim_core.strict_json import MISSPELT, closest, load_file

# Families whose attention normalises each query and key head (RMSNorm over head_dim) before
# rope: Qwen3's q_norm / k_norm.
QK_NORM_FAMILIES = frozenset({"qwen3", "qwen3_moe"})


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """Shape of a decoder-only transformer (dense or MoE)."""

    name: str
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: int
    num_experts: int = 0
    experts_per_token: int = 1
    model_type: str = ""
    explicit_head_dim: int = 0  # HF `head_dim` when it is not hidden / heads (Qwen3)

    @property
    def qk_norm(self) -> bool:
        """True when attention normalises every query and key head (Qwen3)."""
        return self.model_type in QK_NORM_FAMILIES

    @property
    def is_moe(self) -> bool:
        """True when the model has routed experts."""
        return self.num_experts > 0

    @property
    def head_dim(self) -> int:
        """Width of one attention head (h / heads unless the config states `head_dim`)."""
        return self.explicit_head_dim or self.hidden_size // self.num_heads

    @property
    def q_dim(self) -> int:
        """Width of the Q projection (= h for Llama and Mixtral)."""
        return self.num_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        """Width of the K (or V) projection: kv_heads × head_dim = h / (heads / kv_heads)."""
        return self.num_kv_heads * self.head_dim


def _require_int(raw: dict, key: str, where: str, aliases: tuple[str, ...] = ()) -> int:
    for name in (key, *aliases):
        if name in raw:
            return checked_int(raw[name], MODEL_DIM, name, where, "fix the model config")
    near = closest(key, [k for k in raw if isinstance(k, str)])
    fix = f"rename '{near}' to '{key}'" if near else "add it to the model config"
    raise InputError(f"missing key '{key}'", where, fix)


def _same_under_both(raw: dict, names: tuple[str, str], where: str) -> None:
    """Two spellings of one key may both appear only with the same value."""
    first, second = names
    if first in raw and second in raw and raw[first] != raw[second]:
        raise InputError(f"'{first}' ({raw[first]!r}) and '{second}' ({raw[second]!r}) name "
                         "the same quantity with different values", where,
                         "keep one of them or give both the same value")


# Keys read only when present (a default applies otherwise): a near miss of one of them is
# most likely a typo that silently changes the model (e.g. the KV head count).
OPTIONAL_KEYS = ("num_key_value_heads", "head_dim", "num_local_experts", "num_experts",
                 "num_experts_per_tok", "moe_intermediate_size", "ffn_dim", "model_type")
READ_KEYS = frozenset({*OPTIONAL_KEYS, "num_attention_heads", "hidden_size", "num_hidden_layers",
                       "intermediate_size", "vocab_size", "max_position_embeddings"})


def _warn_misspelt(raw: dict, where: str, warn: Callable[[str], None]) -> None:
    """Warn of keys that are not read but look like an absent optional key (HF configs hold
    many keys this model does not use, so the others pass without a word)."""
    absent = [k for k in OPTIONAL_KEYS if k not in raw]
    for key in raw:
        near = closest(key, absent, MISSPELT) if key not in READ_KEYS else None
        if near is not None:
            warn(f"{where}: key '{key}' is not read; did you mean '{near}'? (without it, "
                 f"'{near}' takes its default)")


def model_from_dict(name: str, raw: dict, where: str,
                    warn: Callable[[str], None] = lambda msg: None) -> ModelConfig:
    """Validate a parsed HF-style config dict and build a ModelConfig (`warn` hears of keys
    that look like a misspelt optional key)."""
    if not isinstance(raw, dict):
        raise InputError("model config is not a JSON object", where, "fix the file")
    _warn_misspelt(raw, where, warn)
    heads = _require_int(raw, "num_attention_heads", where)
    kv_heads = _require_int(raw, "num_key_value_heads", where) if "num_key_value_heads" in raw \
        else heads
    hidden = _require_int(raw, "hidden_size", where)
    # A null head_dim (HF writes one) means h / heads; any other value is checked, so 0 or
    # false is an error rather than silently the default.
    head_dim = _require_int(raw, "head_dim", where) if raw.get("head_dim") is not None else 0
    if (hidden % heads and not head_dim) or heads % kv_heads:
        raise InputError(f"hidden_size {hidden}, heads {heads} and kv heads {kv_heads} do not "
                         "divide evenly", where, "fix the model config")
    # Mixtral/PhiMoE name the expert count num_local_experts, Qwen-MoE num_experts, and Qwen
    # gives the per-expert width as moe_intermediate_size.
    _same_under_both(raw, ("num_local_experts", "num_experts"), where)
    _same_under_both(raw, ("intermediate_size", "ffn_dim"), where)
    expert_key = next((k for k in ("num_local_experts", "num_experts") if k in raw), None)
    experts = _require_int(raw, expert_key, where) if expert_key else 0
    per_tok = _require_int(raw, "num_experts_per_tok", where) if experts and \
        "num_experts_per_tok" in raw else 1
    if per_tok > experts > 0:
        raise InputError(f"num_experts_per_tok {per_tok} exceeds the {experts} experts", where,
                         "route each token to at most as many experts as the model has")
    model_type = raw.get("model_type", "")
    if not isinstance(model_type, str):
        raise InputError(f"'model_type' must be a string, got {model_type!r}", where,
                         "give the HF model type, e.g. \"llama\"")
    ffn_keys = ("moe_intermediate_size", "intermediate_size") if experts else \
        ("intermediate_size",)
    ffn_key = next((k for k in ffn_keys if k in raw), "intermediate_size")
    return ModelConfig(
        name=name,
        hidden_size=hidden,
        num_layers=_require_int(raw, "num_hidden_layers", where),
        num_heads=heads,
        num_kv_heads=kv_heads,
        intermediate_size=_require_int(raw, ffn_key, where, ("ffn_dim",)),
        vocab_size=_require_int(raw, "vocab_size", where),
        max_position_embeddings=_require_int(raw, "max_position_embeddings", where),
        num_experts=experts,
        experts_per_token=per_tok,
        model_type=model_type,
        explicit_head_dim=head_dim,
    )


def load_model_config(name: str, root: Path,
                      warn: Callable[[str], None] = lambda msg: None) -> ModelConfig:
    """Load `<root>/<org>/<model>.json` for `name` = `<org>/<model>`."""
    path = root / f"{name}.json"
    if not path.is_file():
        raise InputError(f"unknown model '{name}'", f"no file {path}",
                         "add the HF-style config there or fix model_name in the cluster config")
    return model_from_dict(name, load_file(path, "fix the model config"), str(path), warn)
