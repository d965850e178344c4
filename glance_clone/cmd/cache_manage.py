"""glance-cache-manage: look at and manage one glance-api's image cache.

Talks to the ``cachemanage`` admin routes (``/v1/cached_images``,
``/v1/queued_images``) of the api at ``--host``/``--port``; needs no
configuration file. Exit status 0 on success (or when a confirmation is
declined), 1 on any error. ``--host`` may carry ``https://`` to use TLS
(``-k`` skips certificate checks).

Authentication: ``--os-auth-token`` is sent as ``X-Auth-Token``. With the
keystone strategy (the default when an auth URL is known) a token is first
obtained from ``--os-auth-url`` with ``--os-username``/``--os-password`` and
the tenant (keystone v2.0, or v3 when the URL ends in ``/v3``; there the
user and the project are in ``--os-user-domain-name`` and
``--os-project-domain-name``, else in the domain whose id is "default").
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import requests

from glance_clone.common import exception, faults

PROG = "glance-cache-manage"
SUCCESS = 0
FAILURE = 1
TIMEOUT = 60.0

USAGE = """%(prog)s <command> [options] [args]

Commands:

    help <command>              Output help for one of the commands below

    list-cached                 List all images currently cached

    list-queued                 List all images currently queued for caching

    queue-image <id>            Queue an image for caching

    delete-cached-image <id>    Purge an image from the cache

    delete-all-cached-images    Remove all images from the cache

    delete-queued-image <id>    Remove an image from the cache queue

    delete-all-queued-images    Remove all images from the cache queue
"""


class CacheNotEnabled(exception.NotFound):
    pass


class CacheClient:
    """The cache admin routes of one glance-api."""

    def __init__(self, base_url: str, token: str | None, insecure: bool) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.verify = not insecure
        if token:
            self.session.headers["X-Auth-Token"] = token

    def call(self, method: str, path: str) -> Any:
        url = self.base_url + path
        try:
            response = self.session.request(method, url, timeout=TIMEOUT)
        except requests.RequestException as err:
            raise exception.GlanceError("Error communicating with %s: %s"
                                        % (self.base_url, err))
        if response.status_code == 404:
            raise CacheNotEnabled()
        if response.status_code == 403:
            raise exception.Forbidden()
        if response.status_code >= 400:
            detail = faults.explanation_from_body(response.text)
            raise exception.GlanceError("%s %s: %s" % (response.status_code,
                                                       response.reason, detail))
        return response.json() if response.content else None


# -- output -----------------------------------------------------------------------
def _cell(value: object, width: int, right: bool = False) -> str:
    text = str(value)[:width]
    return text.rjust(width) if right else text.ljust(width)


def table(columns: Sequence[tuple[str, int, bool]], rows: Sequence[Sequence[object]]) -> str:
    """Fixed-width columns: (label, width, right-justified); headers left."""
    lines = [" ".join(_cell(label, width) for label, width, _right in columns),
             " ".join("-" * width for _label, width, _right in columns)]
    for row in rows:
        lines.append(" ".join(_cell(value, width, right)
                              for value, (_label, width, right) in zip(row, columns, strict=True)))
    return "\n".join(lines)


def _utc(timestamp: float) -> str:
    moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC)
    return moment.replace(tzinfo=None).isoformat()


def confirm(question: str) -> bool:
    try:
        answer = input("%s [y/N]: " % question)
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def _one_id(args: list[str], purpose: str) -> str | None:
    if len(args) == 1:
        return args[0]
    print("Please specify one and only ID of the image you wish to %s "
          "as the first argument" % purpose)
    return None


# -- commands ---------------------------------------------------------------------
def _act_on_one(options: argparse.Namespace, args: list[str], purpose: str,
                question: str, method: str, path: str, done: str) -> int:
    """One-image commands: check the id, confirm, call, report."""
    image_id = _one_id(args, purpose)
    if image_id is None:
        return FAILURE
    if not options.force and not confirm(question % image_id):
        return SUCCESS
    client_for(options).call(method, path % image_id)
    if options.verbose:
        print(done % image_id)
    return SUCCESS


def list_cached(options: argparse.Namespace, args: list[str]) -> int:
    """%(prog)s list-cached [options]

List all images currently cached."""
    images = client_for(options).call("GET", "/v1/cached_images")["cached_images"]
    if not images:
        print("No cached images.")
        return SUCCESS
    print("Found %d cached images..." % len(images))
    columns = [("ID", 36, False), ("Last Accessed (UTC)", 19, False),
               ("Last Modified (UTC)", 19, False), ("Size", 14, True), ("Hits", 10, True)]
    rows = [(image["image_id"],
             "N/A" if not image["last_accessed"] else _utc(image["last_accessed"]),
             _utc(image["last_modified"]), image["size"], image["hits"])
            for image in images]
    print(table(columns, rows))
    return SUCCESS


def list_queued(options: argparse.Namespace, args: list[str]) -> int:
    """%(prog)s list-queued [options]

List all images currently queued for caching."""
    images = client_for(options).call("GET", "/v1/queued_images")["queued_images"]
    if not images:
        print("No queued images.")
        return SUCCESS
    print("Found %d queued images..." % len(images))
    print(table([("ID", 36, False)], [(image_id,) for image_id in images]))
    return SUCCESS


def queue_image(options: argparse.Namespace, args: list[str]) -> int:
    """%(prog)s queue-image <IMAGE_ID> [options]

Queue an image for caching by glance-cache-prefetcher."""
    return _act_on_one(options, args, "queue for caching", "Queue image %s for caching?",
                       "PUT", "/v1/queued_images/%s", "Queued image %s for caching")


def delete_cached_image(options: argparse.Namespace, args: list[str]) -> int:
    """%(prog)s delete-cached-image <IMAGE_ID> [options]

Remove one image from the cache."""
    return _act_on_one(options, args, "delete from the cache", "Delete cached image %s?",
                       "DELETE", "/v1/cached_images/%s", "Deleted cached image %s")


def delete_all_cached_images(options: argparse.Namespace, args: list[str]) -> int:
    """%(prog)s delete-all-cached-images [options]

Remove all images from the cache."""
    if not options.force and not confirm("Delete all cached images?"):
        return SUCCESS
    result = client_for(options).call("DELETE", "/v1/cached_images")
    if options.verbose:
        print("Deleted %s cached images" % result["num_deleted"])
    return SUCCESS


def delete_queued_image(options: argparse.Namespace, args: list[str]) -> int:
    """%(prog)s delete-queued-image <IMAGE_ID> [options]

Remove one image from the cache queue."""
    return _act_on_one(options, args, "delete from the queue", "Delete queued image %s?",
                       "DELETE", "/v1/queued_images/%s", "Deleted queued image %s")


def delete_all_queued_images(options: argparse.Namespace, args: list[str]) -> int:
    """%(prog)s delete-all-queued-images [options]

Remove all images from the cache queue."""
    if not options.force and not confirm("Delete all queued images?"):
        return SUCCESS
    result = client_for(options).call("DELETE", "/v1/queued_images")
    if options.verbose:
        print("Deleted %s queued images" % result["num_deleted"])
    return SUCCESS


Command = Callable[[argparse.Namespace, list[str]], int]

COMMANDS: dict[str, tuple[Command, str]] = {
    "list-cached": (list_cached, "show cached images"),
    "list-queued": (list_queued, "show queued images"),
    "queue-image": (queue_image, "queue the specified image for caching"),
    "delete-cached-image": (delete_cached_image, "delete the specified cached image"),
    "delete-all-cached-images": (delete_all_cached_images, "delete all cached images"),
    "delete-queued-image": (delete_queued_image, "delete the specified queued image"),
    "delete-all-queued-images": (delete_all_queued_images, "delete all queued images"),
}


def run_command(command: Command, action: str, options: argparse.Namespace,
                args: list[str]) -> int:
    """Run ``command``, turning errors into the messages operators know."""
    try:
        return command(options, args)
    except CacheNotEnabled:
        print("Cache management middleware not enabled on host %s" % options.host)
    except exception.Forbidden:
        print("Not authorized to make this request.")
    except Exception as err:
        if options.debug:
            raise
        print("Failed to %s. Got error:" % action)
        for line in str(err).split("\n"):
            print(line)
    return FAILURE


# -- connection and credentials ----------------------------------------------------
def base_url(options: argparse.Namespace) -> str:
    host = options.host
    scheme = "http"
    for prefix in ("https://", "http://"):
        if host.startswith(prefix):
            scheme, host = prefix[:-3], host[len(prefix):]
    host = host.rstrip("/")
    if ":" in host and not host.startswith("["):
        host = "[%s]" % host
    return "%s://%s:%d" % (scheme, host, options.port)


def client_for(options: argparse.Namespace) -> CacheClient:
    return CacheClient(base_url(options), auth_token(options), options.insecure)


def auth_token(options: argparse.Namespace) -> str | None:
    """The token to send; fetched from keystone when the strategy says so."""
    if options.os_auth_token:
        return str(options.os_auth_token)
    strategy = options.os_auth_strategy or ("keystone" if options.os_auth_url else "noauth")
    if strategy == "noauth":
        return None
    if strategy != "keystone":
        raise exception.GlanceError("Unknown auth strategy '%s' (keystone or noauth)" % strategy)
    if not (options.os_auth_url and options.os_username and options.os_password):
        raise exception.GlanceError("Keystone authentication needs --os-auth-url, "
                                    "--os-username and --os-password")
    return keystone_token(options)


def keystone_token(options: argparse.Namespace) -> str:
    url = options.os_auth_url.rstrip("/")
    if url.endswith("/v3"):
        project: dict[str, Any] = ({"id": options.os_tenant_id} if options.os_tenant_id
                                   else {"name": options.os_tenant_name,
                                         "domain": _domain(options.os_project_domain_name)})
        body: dict[str, Any] = {"auth": {"identity": {"methods": ["password"], "password": {
            "user": {"name": options.os_username,
                     "domain": _domain(options.os_user_domain_name),
                     "password": options.os_password}}}}}
        if options.os_tenant_id or options.os_tenant_name:
            body["auth"]["scope"] = {"project": project}
        response = _post_auth(url + "/auth/tokens", body, options.insecure)
        token = response.headers.get("X-Subject-Token")
    else:
        auth: dict[str, Any] = {"passwordCredentials": {
            "username": options.os_username, "password": options.os_password}}
        if options.os_tenant_id:
            auth["tenantId"] = options.os_tenant_id
        elif options.os_tenant_name:
            auth["tenantName"] = options.os_tenant_name
        response = _post_auth(url + "/tokens", {"auth": auth}, options.insecure)
        try:
            token = response.json()["access"]["token"]["id"]
        except (ValueError, KeyError, TypeError):
            token = None
    if not token:
        raise exception.GlanceError("Keystone at %s returned no token" % url)
    return str(token)


def _domain(name: str | None) -> dict[str, str]:
    """A Keystone v3 domain by name, else Keystone's own (id "default")."""
    return {"name": name} if name else {"id": "default"}


def _post_auth(url: str, body: dict[str, Any], insecure: bool) -> requests.Response:
    try:
        response = requests.post(url, json=body, timeout=TIMEOUT, verify=not insecure)
    except requests.RequestException as err:
        raise exception.GlanceError("Error communicating with %s: %s" % (url, err))
    if response.status_code >= 400:
        raise exception.GlanceError("Authentication at %s failed: %s %s"
                                    % (url, response.status_code, response.reason))
    return response


# -- command line -------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    parser = argparse.ArgumentParser(prog=PROG, usage=USAGE,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="Print confirmations and the time taken.")
    parser.add_argument("-d", "--debug", action="store_true",
                        help="Show the full error instead of a summary.")
    parser.add_argument("-H", "--host", default="0.0.0.0", metavar="ADDRESS",
                        help="Address of the glance-api (default: %(default)s).")
    parser.add_argument("-p", "--port", type=int, default=9292, metavar="PORT",
                        help="Port of the glance-api (default: %(default)s).")
    parser.add_argument("-k", "--insecure", action="store_true",
                        help="Do not verify the api's TLS certificate.")
    parser.add_argument("-f", "--force", action="store_true",
                        help="Do not ask for confirmation.")
    parser.add_argument("--os-auth-token", default=env("OS_AUTH_TOKEN"),
                        help="Token to send (env OS_AUTH_TOKEN).")
    parser.add_argument("--os-username", default=env("OS_USERNAME"), help="env OS_USERNAME")
    parser.add_argument("--os-password", default=env("OS_PASSWORD"), help="env OS_PASSWORD")
    parser.add_argument("--os-tenant-id", default=env("OS_TENANT_ID"), help="env OS_TENANT_ID")
    parser.add_argument("--os-tenant-name", default=env("OS_TENANT_NAME"),
                        help="env OS_TENANT_NAME")
    parser.add_argument("--os-auth-url", default=env("OS_AUTH_URL"), help="env OS_AUTH_URL")
    parser.add_argument("--os-user-domain-name", default=env("OS_USER_DOMAIN_NAME"),
                        help="env OS_USER_DOMAIN_NAME (keystone v3)")
    parser.add_argument("--os-project-domain-name", default=env("OS_PROJECT_DOMAIN_NAME"),
                        help="env OS_PROJECT_DOMAIN_NAME (keystone v3)")
    parser.add_argument("--os-region-name", default=env("OS_REGION_NAME"),
                        help="env OS_REGION_NAME (accepted; the api is --host)")
    parser.add_argument("-S", "--os_auth_strategy", "--os-auth-strategy",
                        dest="os_auth_strategy", default=env("OS_AUTH_STRATEGY"),
                        help="keystone or noauth (keystone when an auth URL is known).")
    parser.add_argument("command", nargs="?", help=argparse.SUPPRESS)
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    return parser


def _usage_of(command: Command) -> str:
    return (command.__doc__ or "") % {"prog": PROG}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    options = parser.parse_intermixed_args(list(sys.argv[1:] if argv is None else argv))
    if not options.command:
        parser.print_help()
        return SUCCESS
    args = list(options.args)
    if options.command == "help":
        if len(args) != 1 or args[0] not in COMMANDS:
            if args:
                print("Unknown command: %s" % args[0], file=sys.stderr)
            else:
                print("Please specify a command", file=sys.stderr)
            return FAILURE
        print(_usage_of(COMMANDS[args[0]][0]))
        return SUCCESS
    entry = COMMANDS.get(options.command)
    if entry is None:
        parser.print_help()
        print("Unknown command: %s" % options.command, file=sys.stderr)
        return FAILURE
    command, action = entry
    started = time.monotonic()
    result = run_command(command, action, options, args)
    if options.verbose:
        print("Completed in %-0.4f sec." % (time.monotonic() - started))
    return result


if __name__ == "__main__":
    sys.exit(main())
