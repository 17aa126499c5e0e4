"""The typed exception tree. The CLI maps these to exit codes at the edge; nothing else
prints them, so a message must stand on its own for a person reading a terminal."""


class AiniError(Exception):
    """An operation failed (exit 1)."""

    exit_code = 1


class InputError(AiniError):
    """The user's input is wrong: aini.yml, a flag, a file (exit 2)."""

    exit_code = 2


class ConfigError(InputError):
    """aini.yml is missing, unreadable or invalid. `problems` lists one line per field."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


class SizingError(InputError):
    """The enabled services do not fit the chosen server."""
