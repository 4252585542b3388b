"""The Celery worker: loads one model at start, batches work from many tasks into forward passes."""
