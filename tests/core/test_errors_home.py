"""Every exception certloop defines lives in its package's errors module (certloop/errors.py,
renewer/errors.py, alerting/errors.py), so each package's tree is read in one place and a caller
imports what it catches from there.

Every installed module is imported and each exception class is checked for where it is defined. The
one exception: a class that must subclass a library's own exception to travel through that library
stays at that seam, named below with the reason.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import certloop
from certloop.errors import CertloopError

# module:Class -> why it is not in an errors module
AT_THEIR_SEAM = {
    "certloop.httpconnections:Refused": "aiohttp's BadHttpMessage, raised into aiohttp's parser error path; "
                                        "in certloop.errors it would make every importer load aiohttp",
}
NOT_IMPORTABLE_ALONE = ("certloop.renewer.migrations.env", "certloop.renewer.migrations.versions.")


def _exceptions() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(certloop.__path__, "certloop."):
        if info.name.startswith(NOT_IMPORTABLE_ALONE):  # Alembic's scripts, run only inside a migration
            continue
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == module.__name__:
                found[f"{obj.__module__}:{obj.__qualname__}"] = obj
    return found


def test_exceptions_are_defined_in_errors_modules() -> None:
    found = _exceptions()
    assert "certloop.renewer.errors:StoreUnavailable" in found  # the walk reaches the subpackages
    elsewhere = sorted(name for name in found if not name.split(":")[0].endswith(".errors"))
    assert elsewhere == sorted(AT_THEIR_SEAM), "define these in the package's errors module: " + ", ".join(
        sorted(set(elsewhere) - set(AT_THEIR_SEAM)))


def test_each_package_roots_its_tree_in_certloop_error() -> None:
    """Everything in an errors module is a CertloopError, but the HTTP answer raised by handlers."""
    found = _exceptions()
    outside = sorted(name for name, cls in found.items()
                     if name.split(":")[0].endswith(".errors") and not issubclass(cls, CertloopError))
    assert outside == ["certloop.errors:HttpError"]
