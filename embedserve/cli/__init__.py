"""The `embedserve` command line: its entry (main), `embed` and its file handling, `keys`, `models`, errors."""
