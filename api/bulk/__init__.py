"""The bulk resources: native jobs, OpenAI batches and files, their results and listings."""
