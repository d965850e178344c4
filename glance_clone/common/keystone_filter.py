"""keystonemiddleware's auth_token, answering 503 while Keystone is down.

With ``delay_auth_decision = true`` (Glance's api pipelines),
keystonemiddleware treats a token it could not validate because Keystone
was unreachable like a bad token: the request goes on unconfirmed and the
caller gets 401, as if the token were wrong. Here that case is told apart
and answered 503 with a message saying what happened, so clients retry
instead of dropping a good token. Once Keystone answers again, the same
token is validated as usual.

Imported only by ``auth_token.filter_factory`` (it needs keystonemiddleware).
"""

from __future__ import annotations

from typing import Any

from keystoneauth1 import exceptions as ksa_exceptions
from keystonemiddleware import auth_token
from keystonemiddleware.auth_token import _exceptions as ksm_exceptions

from glance_clone.common import exception, faults

# What keystonemiddleware counts as "Keystone could not be asked" (it turns
# these into an invalid token when the auth decision is delayed).
UNREACHABLE = (ksa_exceptions.ConnectFailure, ksa_exceptions.DiscoveryFailure,
               ksa_exceptions.RequestTimeout, ksm_exceptions.ServiceError)


class AuthTokenFilter(auth_token.AuthProtocol):
    """keystonemiddleware's filter; see the module doc for the difference."""

    def fetch_token(self, token: str, **kwargs: Any) -> Any:
        try:
            return super().fetch_token(token, **kwargs)
        except ksm_exceptions.InvalidToken as err:
            # keystonemiddleware raises InvalidToken while handling the
            # failure to reach Keystone, so that failure is its context.
            if isinstance(err.__context__, UNREACHABLE):
                raise exception.IdentityUnavailable() from err
            raise

    def process_request(self, request: Any) -> Any:
        try:
            return super().process_request(request)
        except exception.IdentityUnavailable as err:
            # keystonemiddleware has logged why Keystone could not be asked.
            return faults.to_http(err)
