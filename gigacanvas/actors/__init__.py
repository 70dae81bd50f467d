"""Models and the Ray actors that hold them: adapters, loading, the worker."""
