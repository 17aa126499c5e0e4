"""What to run, without running it: commands as data (cmd.py), Compose and engine argv
builders and the parsers of their output (compose.py, engine.py)."""
