"""A pickled object whose loading would run code: weights_only loading must refuse it without running it."""

UNPICKLED_CALLS: list[str] = []
"""Filled only if a Payload was ever unpickled."""


def record_unpickling() -> None:
    UNPICKLED_CALLS.append("ran")


class Payload:
    def __reduce__(self):
        return (record_unpickling, ())
