"""The bottom layer shared by the perf models, the engine users and the serving layer."""
