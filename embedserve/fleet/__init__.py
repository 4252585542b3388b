"""The fleet of workers: the model catalogue, live registry, liveness, forward stats and quantization ranges."""
