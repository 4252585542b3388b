"""Rerankers: the cross-encoder and Qwen3 engines and the service that runs them."""
