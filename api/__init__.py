"""The HTTP API: authentication, validation and routing. Never imports torch or transformers."""
