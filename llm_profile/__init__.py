"""Performance models: profiled latency tables, roofline from hardware specs, the profiler."""
