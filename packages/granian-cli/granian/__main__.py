from granian.cli import cli

# A fixed prog name: click would otherwise call it `python -m granian` in usage and --version.
cli(prog_name='granian')
