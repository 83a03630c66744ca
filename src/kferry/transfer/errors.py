"""What can go wrong moving images: registry, network, authentication, damaged bytes."""

from __future__ import annotations

from kferry.errors import KferryError


class RegistryError(KferryError):
    """A registry or network failure, with what to do about it."""

    exit_code = 1


class AuthError(RegistryError):
    pass


class CredentialsRejected(AuthError):
    """The registry or its token service answered the credentials themselves with 401/403
    (not: no challenge, a realm that is not HTTPS...): what preflight and login report as a
    wrong user name or password."""

    def __init__(self, message: str, via_token_service: bool = False) -> None:
        super().__init__(message)
        self.via_token_service = via_token_service


class NotFound(RegistryError):
    pass


class DigestMismatch(RegistryError):
    pass


class TransientError(RegistryError):
    """A dropped connection, 5xx/429 or an expired token during an upload: the operation may
    succeed if started again (after ``retry_after`` seconds when the server said so)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
