"""What a real vLLM server picks when the user leaves a setting unset (serving.md §4.3).

`--vllm-version` names the vLLM whose choices an instance follows (`auto`: the version in the
instance's profile `meta.yaml`, else the version the artifact profiles were validated with);
`--vllm-usage-context` says whether the engine runs behind `vllm serve` (`api-server`) or in
the offline `LLM` class (`llm`). Values from vLLM's engine-argument code
(`EngineArgs._set_default_args` / `get_batch_defaults`, `SchedulerConfig`):

| version | device | api-server seqs / tokens | llm seqs / tokens | reserve full input |
|---|---|---|---|---|
| 0.11 | GPU ≥ 70 GiB, not A100 | 1024 / 8192 | 1024 / 16384 | no |
| 0.11 | other GPU | 256 / 2048 | 256 / 8192 | no |
| 0.19 | same rules as 0.11 | | | yes (`scheduler_reserve_full_isl`) |
| both | TPU v6e / v5e / v5p | 256 / 1024, 512, 256 | 256 / 2048, 1024, 512 | as above |

"Reserve full input": a waiting (or preempted) request is admitted only when the KV blocks of
its whole current sequence are free, though only the scheduled chunk is allocated.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmsim_core.errors import InputError

GIB = 1 << 30
VERSIONS = ("0.11", "0.19")
# The artifact's profiles carry no version; its runs were validated against vLLM 0.11–0.13.
ARTIFACT_VERSION = "0.11"
USAGE_CONTEXTS = ("api-server", "llm")
LARGE_GPU_BYTES = 70 * GIB  # vLLM's threshold for the large-device defaults
_TPU_TOKENS = {"api-server": {"v6e": 1024, "v5e": 512, "v5p": 256},
               "llm": {"v6e": 2048, "v5e": 1024, "v5p": 512}}


@dataclass(frozen=True, slots=True)
class EngineDefaults:
    """vLLM's own choices for one instance, and why."""

    max_num_seqs: int
    max_num_batched_tokens: int
    reserve_full_input: bool
    reason: str


def known_version(version: str) -> bool:
    """True when `version`'s major.minor has engine defaults here."""
    return ".".join(version.split(".")[:2]) in VERSIONS


def resolve_version(requested: str, profile_version: str | None) -> str:
    """`auto` → the profile's vLLM (major.minor) when it is one we know, else the artifact's."""
    if requested != "auto":
        return requested
    if profile_version and known_version(profile_version):
        return ".".join(profile_version.split(".")[:2])
    return ARTIFACT_VERSION


def engine_defaults(version: str, hardware: str, device_bytes: int,
                    usage: str = "api-server") -> EngineDefaults:
    """vLLM `version`'s max_num_seqs / max_num_batched_tokens for one device."""
    if version not in VERSIONS:
        raise InputError(f"unknown vLLM version {version!r}", "--vllm-version",
                         f"use auto or one of {', '.join(VERSIONS)}")
    reserve = tuple(map(int, version.split("."))) >= (0, 19)
    name = hardware.lower()
    if name.startswith("tpu"):
        chip = next((c for c in _TPU_TOKENS[usage] if c in name), "v6e")
        return EngineDefaults(256, _TPU_TOKENS[usage][chip], reserve,
                              f"vLLM {version} {usage} default for TPU {chip}")
    large = device_bytes >= LARGE_GPU_BYTES and "a100" not in name
    if large:
        seqs, tokens = 1024, 8192 if usage == "api-server" else 16384
    else:
        seqs, tokens = 256, 2048 if usage == "api-server" else 8192
    size = "≥ 70 GiB" if large else "< 70 GiB"
    return EngineDefaults(seqs, tokens, reserve,
                          f"vLLM {version} {usage} default for a {size} GPU")
