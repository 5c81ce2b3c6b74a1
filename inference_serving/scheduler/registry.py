"""The schedulers, by `--scheduler` name, and the loading of a `CUSTOM` one."""

from __future__ import annotations

from inference_serving.kv_cache import KVCacheManager
from inference_serving.scheduler.base import Scheduler, SchedulerOptions, SchedulerResources
from inference_serving.scheduler.legacy import LegacyScheduler
from inference_serving.scheduler.vllm import VllmScheduler
from llmsim_core.errors import InputError
from llmsim_core.plugins import construct, load_class

SCHEDULERS: dict[str, type] = {"vllm": VllmScheduler, "legacy": LegacyScheduler}


def scheduler_class(name: str, custom: str | None = None) -> type:
    """The scheduler class registered under `name` (`CUSTOM` loads `custom`)."""
    if name == "CUSTOM":
        if not custom:
            raise InputError("CUSTOM scheduling needs a scheduler class", "--scheduler",
                             "pass --custom-scheduler package.module:Class")
        return load_class(custom, "--custom-scheduler", Scheduler)
    cls = SCHEDULERS.get(name)
    if cls is None:
        raise InputError(f"unknown scheduler '{name}'", "--scheduler",
                         f"use one of {', '.join([*SCHEDULERS, 'CUSTOM'])}")
    return cls


def make_scheduler(cls: type, options: SchedulerOptions, kv: KVCacheManager,
                   resources: SchedulerResources, custom: str | None = None) -> Scheduler:
    """One instance's scheduler; a failing `CUSTOM` constructor is a one-line error."""
    if custom is None:
        return cls(options, kv, resources)
    where = f"--custom-scheduler {custom}"
    scheduler = construct(cls, where, options, kv, resources)
    if not isinstance(getattr(scheduler, "host_bytes", None), int):
        raise InputError(f"{cls.__name__} has no integer attribute host_bytes", where,
                         "set self.host_bytes (host memory held by swapped-out KV, 0 if none)")
    return scheduler
