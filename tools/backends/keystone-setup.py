"""Wait for Keystone, create the service user for glance, check it works.

    keystone-setup.py UWSGI_PID TIMEOUT

Run by start-keystone.sh with the Python of Keystone's venv (keystoneauth1
comes with keystone), with the KEYSTONE_* environment variables that script
sets. Waits up to TIMEOUT seconds for the API while UWSGI_PID lives. Safe
to run again: what exists is kept. Ends with the check keystonemiddleware
depends on: the service user validates a user's token.
"""

from __future__ import annotations

import os
import sys
import time
import urllib.error
import urllib.request

from keystoneauth1 import session
from keystoneauth1.identity import v3

ENV = os.environ
URL = ENV["KEYSTONE_URL"]


def login(user: str, password: str, project: str) -> session.Session:
    return session.Session(auth=v3.Password(
        auth_url=URL, username=user, password=password, project_name=project,
        user_domain_id="default", project_domain_id="default"))


class Admin:
    """Just enough of the identity API, as the bootstrap admin."""

    def __init__(self) -> None:
        self.session = login(ENV["KEYSTONE_ADMIN_USER"], ENV["KEYSTONE_ADMIN_PASSWORD"],
                             ENV["KEYSTONE_ADMIN_PROJECT"])

    def call(self, method: str, path: str, **kwargs: object) -> dict:
        response = self.session.request(URL + path, method, **kwargs)
        return response.json() if response.content else {}

    def ensure(self, kind: str, name: str, **fields: object) -> dict:
        """The ``kind`` (projects, users, roles) called ``name``, created if missing."""
        query = {"name": name}
        if "domain_id" in fields:
            query["domain_id"] = str(fields["domain_id"])
        found = self.call("GET", "/" + kind, params=query)[kind]
        if found:
            return found[0]
        print("created %s %s" % (kind[:-1], name))
        return self.call("POST", "/" + kind, json={kind[:-1]: dict(fields, name=name)})[kind[:-1]]


def wait_for_api(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(URL, timeout=5) as response:
                if response.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        os.kill(pid, 0)  # ProcessLookupError once uWSGI is gone
        if time.monotonic() > deadline:
            raise SystemExit("no answer from %s within %ss" % (URL, timeout))
        time.sleep(0.2)


def main() -> int:
    wait_for_api(int(sys.argv[1]), float(sys.argv[2]))
    admin = Admin()
    project = admin.ensure("projects", ENV["KEYSTONE_SERVICE_PROJECT"], domain_id="default")
    user = admin.ensure("users", ENV["KEYSTONE_SERVICE_USER"], domain_id="default",
                        password=ENV["KEYSTONE_SERVICE_PASSWORD"])
    # Keystone's policy lets the role "service" validate tokens.
    role = admin.ensure("roles", "service")
    admin.call("PUT", "/projects/%s/users/%s/roles/%s" % (project["id"], user["id"], role["id"]))

    service = login(ENV["KEYSTONE_SERVICE_USER"], ENV["KEYSTONE_SERVICE_PASSWORD"],
                    ENV["KEYSTONE_SERVICE_PROJECT"])
    subject = admin.session.get_token()
    checked = service.get(URL + "/auth/tokens", headers={"X-Subject-Token": subject})
    print("the service user validated a token of %s"
          % checked.json()["token"]["user"]["name"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
