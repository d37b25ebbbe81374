"""The one base type for every error the app explains to its user.

Each subclass carries a message written for a person (what is wrong, and how
to fix it). Callers that only need to show that message catch ``FmnistError``
instead of listing every subclass; a bug (``TypeError``, ``AttributeError``...)
is not one of these and still surfaces as a bug.
"""

from __future__ import annotations


class FmnistError(Exception):
    """Bad input, a bad file, or a failing plugin: the message says which and what to do."""


__all__ = ["FmnistError"]
