from granian.cli import entrypoint

# Click names the program after how it was started: `python -m granian` in usage and --version.
entrypoint()
