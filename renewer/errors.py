"""The renewer's exception tree: every error it raises on purpose derives from :class:`RenewerError`.

Errors carry data (the step, the return code, the endpoint, the Retry-After instant) so the worker can
branch on facts - retry issuance, retry only the deployment, back off - without parsing messages.

    RenewerError
    ├── IssuanceError                 the issuer could not produce a certificate
    │   ├── RateLimited(retry_after)  the CA said slow down; retry_after is aware UTC or None
    │   ├── Unauthorized              the CA refused the account or the order
    │   ├── ChallengeFailed(domain, detail)
    │   ├── DnsError                  the CA (or a dns-01 hook) could not resolve or publish a record
    │   ├── ConnectionFailed          the CA (or its validation) could not be reached
    │   ├── BackendFailed(returncode, stderr_tail)  a subprocess issuer exited with a failure code
    │   ├── NotDue                    the backend decided nothing is due (acme.sh exit 2)
    │   └── PendingManual             the backend waits for a human (acme.sh exit 3, manual DNS)
    ├── ValidationError(reason)       new material rejected before any live file was touched
    ├── DeployError(step, returncode, stderr_tail)  a deploy step failed (raised inside deploy)
    ├── VerifyError(endpoint, detail) an endpoint did not serve the new leaf in time
    ├── RolledBack(reason, cause)     deploy failed and the previous files are live and served again
    ├── RollbackFailed(reason, cause) deploy failed AND restoring the previous state failed: page someone
    ├── UndoFailed                    inside install: restoring the previous state failed (-> RollbackFailed)
    ├── PayloadError(message)         a webhook body that is not an Alertmanager v4 payload (HTTP 400)
    ├── KeystoreError(path, reason)   a sealed blob cannot be read: wrong key, tampered, unreadable
    ├── StoreUnavailable(operation, detail, database)  the job store cannot be reached; retry later
    ├── DeadlinePassed                a store operation's deadline passed (inside the store thread)
    ├── LeaseLost                     another replica took the job over: stop working on it
    ├── MigrationError(message, database_revision)  the schema cannot be moved as asked
    └── BackupError(path, reason)     a backup cannot be written, read or restored
        ├── WrongKey                  the key or passphrase does not open the archive
        ├── ArchiveDamaged            not a certloop archive, truncated, altered, unknown format
        └── Mismatch                  restored content differs from what the archive lists
"""

from __future__ import annotations

from datetime import datetime

from certloop.errors import CertloopError

__all__ = [
    "ArchiveDamaged",
    "BackendFailed",
    "BackupError",
    "ChallengeFailed",
    "ConnectionFailed",
    "DeadlinePassed",
    "DeployError",
    "DnsError",
    "IssuanceError",
    "KeystoreError",
    "LeaseLost",
    "MigrationError",
    "Mismatch",
    "NotDue",
    "PayloadError",
    "PendingManual",
    "RateLimited",
    "RenewerError",
    "RollbackFailed",
    "RolledBack",
    "StoreUnavailable",
    "Unauthorized",
    "UndoFailed",
    "ValidationError",
    "VerifyError",
    "WrongKey",
]


class RenewerError(CertloopError):
    """Root of the renewer's errors."""


class IssuanceError(RenewerError):
    """The issuer could not produce a certificate; ``detail`` says why in words for the audit trail."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(detail)


class RateLimited(IssuanceError):
    """The CA rate-limited us; ``retry_after`` (aware UTC) is when it said to come back, if it did."""

    def __init__(self, detail: str, retry_after: datetime | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(detail)


class Unauthorized(IssuanceError):
    """The CA refused the account, the key or the order."""


class ChallengeFailed(IssuanceError):
    """The CA could not validate ``domain``'s challenge."""

    def __init__(self, domain: str, detail: str) -> None:
        self.domain = domain
        super().__init__(f"challenge for {domain} failed: {detail}")
        self.detail = detail


class DnsError(IssuanceError):
    """A DNS problem: the CA could not resolve a name, or a dns-01 hook could not publish a record."""


class ConnectionFailed(IssuanceError):
    """The ACME server (or a validation target) could not be reached."""


class BackendFailed(IssuanceError):
    """A subprocess issuer exited with ``returncode``; ``stderr_tail`` is the end of what it printed."""

    def __init__(
        self, detail: str, returncode: int | None, stderr_tail: str, *, outcome: str | None = None
    ) -> None:
        self.returncode = returncode
        self.stderr_tail = stderr_tail
        # how the program ended, without its name: "timed out after 30s", "cannot start: ..."
        self.outcome = outcome or (f"exited {returncode}" if returncode is not None else "failed")
        super().__init__(detail)


class NotDue(IssuanceError):
    """The backend decided the certificate is not due (acme.sh exit code 2); nothing was issued."""


class PendingManual(IssuanceError):
    """The backend waits for a manual step (acme.sh exit code 3: add the DNS TXT record by hand)."""


class ValidationError(RenewerError):
    """New material was rejected before any live file was touched; ``reason`` says what is wrong."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class DeployError(RenewerError):
    """Deploy step ``step`` (its argv) failed with ``returncode``; ``outcome`` says how in words.

    ``returncode`` is None when the step never exited on its own: it timed out, could not start, or
    (for the ``install`` step) a file could not be written - ``outcome`` says which ("timed out after
    30s", "cannot start: No such file or directory", "no space left on device"), so a full disk is never
    reported as a timeout.
    """

    def __init__(
        self, step: tuple[str, ...], returncode: int | None, stderr_tail: str, *, outcome: str | None = None
    ) -> None:
        self.step = step
        self.returncode = returncode
        self.stderr_tail = stderr_tail
        if outcome is None:
            outcome = "timed out" if returncode is None else f"exited {returncode}"
        self.outcome = outcome
        tail = stderr_tail.strip()[-300:]
        super().__init__(f"deploy step {' '.join(step)!r} {outcome}" + (f": {tail}" if tail else ""))


class VerifyError(RenewerError):
    """``endpoint`` did not serve the expected leaf before the deadline; ``detail`` says what it served."""

    def __init__(self, endpoint: str, detail: str) -> None:
        self.endpoint = endpoint
        self.detail = detail
        super().__init__(f"verify {endpoint}: {detail}")


class RolledBack(RenewerError):
    """The deployment failed and was undone: the previous files are live and served again.

    ``reason`` is one line for the audit trail; ``cause`` is the error that triggered the rollback.
    """

    def __init__(self, reason: str, cause: BaseException | None = None) -> None:
        self.reason = reason
        self.cause = cause
        super().__init__(f"rolled back: {reason}")


class RollbackFailed(RenewerError):
    """The deployment failed and restoring the previous state failed too. Live files may be broken."""

    def __init__(self, reason: str, cause: BaseException | None = None) -> None:
        self.reason = reason
        self.cause = cause
        super().__init__(f"ROLLBACK FAILED: {reason}")


class UndoFailed(RenewerError):
    """The previous state could not be restored, or the probe proved it is not served (install turns it
    into :class:`RollbackFailed`)."""


class PayloadError(RenewerError):
    """The body is not an Alertmanager v4 payload; ``message`` says what is wrong (HTTP 400)."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class KeystoreError(RenewerError):
    """A sealed blob cannot be read: wrong key, tampered, bound to another id, or unreadable file."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}" if path else reason)


class StoreUnavailable(RenewerError):
    """The database cannot be reached or refused the operation; the caller may retry later."""

    def __init__(self, operation: str, detail: str, database: str = "") -> None:
        self.operation = operation
        self.detail = detail
        self.database = database  # the URL, password hidden ("" when not known)
        super().__init__(f"job store unavailable during {operation}: {detail}")


class DeadlinePassed(RenewerError):
    """Raised in the store thread when its deadline passed before (or while) it used a connection."""


class LeaseLost(RenewerError):
    """Another replica took the job over (our lease expired); stop working on it."""


class MigrationError(RenewerError):
    """The schema cannot be moved as asked; ``database_revision`` is where the database is."""

    def __init__(self, message: str, database_revision: str | None) -> None:
        self.database_revision = database_revision
        super().__init__(message)


class BackupError(RenewerError):
    """A backup cannot be written, read or restored; ``path`` names the archive or file, ``reason`` why."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}" if path else reason)


class WrongKey(BackupError):
    """The key or passphrase does not open this archive (the archive itself may be fine)."""


class ArchiveDamaged(BackupError):
    """Not a certloop archive, truncated, altered, or of an unknown format."""


class Mismatch(BackupError):
    """The archive decrypted but what it restored differs from what it lists."""
