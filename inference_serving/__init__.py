"""Serving layer: config, router, scheduler, KV cache, iteration timing, metrics."""
