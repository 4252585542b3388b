"""Request checks, one module per resource: parse a body into a typed request, check it against the model."""
