"""HTTP routes, one blueprint per resource; each handler is a few lines over plain functions."""
