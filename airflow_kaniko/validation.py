"""Validators for Kubernetes names, label keys/values, build-arg names and resource quantities.

Each raises InvalidInputError naming the bad value and what is allowed. Pure, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from airflow_kaniko.errors import InvalidInputError

__all__ = [
    "validate_build_arg_name",
    "validate_dns_label",
    "validate_dns_subdomain",
    "validate_label_key",
    "validate_label_value",
    "validate_quantity",
    "validate_resources",
]

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
# Dockerfile ARG names: docker accepts shell-variable-like names.
_BUILD_ARG = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Kubernetes resource.Quantity: a signed decimal number with an optional suffix.
_QUANTITY = re.compile(r"^[+]?(\d+(\.\d*)?|\.\d+)(([KMGTPE]i)|[numkMGTPE]|[eE][+-]?\d+)?$")
RESOURCE_KEYS = frozenset({"cpu", "memory", "ephemeral-storage"})


def validate_dns_label(value: str, *, what: str) -> str:
    if not isinstance(value, str) or len(value) > 63 or not _DNS_LABEL.match(value):
        raise InvalidInputError(
            f"{what} {value!r} is not valid: a DNS-1123 label is at most 63 characters of "
            "lowercase letters, digits and '-', starting and ending with a letter or digit"
        )
    return value


def validate_dns_subdomain(value: str, *, what: str) -> str:
    if not isinstance(value, str) or len(value) > 253 or not _DNS_SUBDOMAIN.match(value):
        raise InvalidInputError(
            f"{what} {value!r} is not valid: a DNS-1123 subdomain is at most 253 characters of "
            "lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"
        )
    return value


def validate_label_key(key: str, *, what: str = "label key") -> str:
    prefix, slash, name = key.rpartition("/") if isinstance(key, str) else ("", "", "")
    ok = isinstance(key, str) and bool(name) and len(name) <= 63 and bool(_LABEL_NAME.match(name))
    if ok and slash:
        ok = len(prefix) <= 253 and bool(_DNS_SUBDOMAIN.match(prefix))
    if not ok:
        raise InvalidInputError(
            f"{what} {key!r} is not valid: allowed is an optional DNS subdomain prefix and '/', then "
            "a name of at most 63 characters [A-Za-z0-9-_.] starting and ending alphanumeric"
        )
    return key


def validate_label_value(value: str, *, what: str = "label value") -> str:
    if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
        raise InvalidInputError(
            f"{what} {value!r} is not valid: at most 63 characters [A-Za-z0-9-_.], "
            "starting and ending alphanumeric, or empty"
        )
    return value


def validate_build_arg_name(name: str) -> str:
    if not isinstance(name, str) or not _BUILD_ARG.match(name):
        raise InvalidInputError(
            f"build-arg name {name!r} is not valid: allowed are letters, digits and '_', "
            "not starting with a digit"
        )
    return name


def validate_quantity(value: str | int | float, *, what: str) -> str:
    text = str(value)
    if not _QUANTITY.match(text):
        raise InvalidInputError(
            f"{what} {text!r} is not a Kubernetes quantity: expected a number with an optional "
            "suffix such as 500m, 2, 1.5, 512Mi, 4Gi"
        )
    return text


def validate_resources(resources: Mapping[str, Mapping[str, str | int | float]]) -> dict[str, dict[str, str]]:
    """Check a {"requests": {...}, "limits": {...}} mapping; return it with quantities as strings."""
    allowed_sections = {"requests", "limits"}
    result: dict[str, dict[str, str]] = {}
    for section, values in resources.items():
        if section not in allowed_sections:
            raise InvalidInputError(
                f"resources section {section!r} is not valid: allowed are requests, limits"
            )
        result[section] = {}
        for key, value in values.items():
            if key not in RESOURCE_KEYS:
                raise InvalidInputError(
                    f"resource {key!r} in {section} is not valid: allowed are {', '.join(sorted(RESOURCE_KEYS))}"
                )
            result[section][key] = validate_quantity(value, what=f"resources.{section}.{key}")
    return result
