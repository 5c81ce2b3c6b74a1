"""Request-trace generator and the small example traces shipped with the simulator."""
