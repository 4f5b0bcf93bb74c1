"""Bad input does not get better with a retry: it fails the task for good."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from airflow_kaniko.errors import InvalidInputError
from airflow_kaniko.version_compat import AirflowFailException

__all__ = ["BadInputFailure", "fail_without_retry_on_bad_input"]


class BadInputFailure(AirflowFailException, InvalidInputError):
    """An InvalidInputError that Airflow does not retry (still catchable as InvalidInputError)."""


@contextlib.contextmanager
def fail_without_retry_on_bad_input() -> Iterator[None]:
    """Re-raise InvalidInputError as BadInputFailure (usable as a decorator too)."""
    try:
        yield
    except BadInputFailure:
        raise
    except InvalidInputError as exc:
        raise BadInputFailure(str(exc)) from exc
