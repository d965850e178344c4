"""glance-replicator: copy images between two glance-api v1 endpoints.

Usage::

    glance-replicator [options] <command> <args...>

    glance-replicator size <server:port>
    glance-replicator dump <server:port> <path>
    glance-replicator load <server:port> <path>
    glance-replicator livecopy <master:port> <slave:port>
    glance-replicator compare <master:port> <slave:port>
    glance-replicator help [<command>]

Arguments are separate words. The comma form of Glance 11.0.2
(``livecopy m:9292,s:9292``, one word) is accepted too.

Options
    ``-c/--chunksize N`` bytes per read and write (65536)
    ``-D/--dontreplicate "F1 F2"`` fields neither compared nor copied
    (default ``created_at date deleted_at location updated_at``)
    ``-m/--metaonly`` metadata only, no image data
    ``-t/--token T`` token for both endpoints; ``-M/--mastertoken`` and
    ``-S/--slavetoken`` for one side (they win over ``-t``). The single
    endpoint of ``size`` and ``dump`` is the master, that of ``load`` the
    slave. Tokens are sent as ``x-auth-token``.
    ``--timeout S`` seconds to wait for a server (600)
    ``--debug``, ``-v/--verbose``, ``--log-file F`` logging

Progress goes to stderr; ``size`` prints its total on stdout and each
command ends with a summary line there.

Exit codes
    0  done; ``compare`` also exits 0 when it found differences (it logs them)
    1  usage error, unreachable endpoint, token refused (401/403), or any
       image that could not be replicated (reported on stderr)
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from glance_clone import replicator
from glance_clone.version import VERSION

PROG = "glance-replicator"
EXIT_OK = 0
EXIT_ERROR = 1

COMMAND_HELP = {
    "size": ("size <server:port>",
             "Determine the size of a glance instance if dumped to disk: the sum "
             "of the sizes of its active images."),
    "dump": ("dump <server:port> <path>",
             "Dump the contents of a glance instance to local disk: <path>/<id> "
             "holds each image's metadata, <path>/<id>.img the data of active "
             "images. Existing files are kept."),
    "load": ("load <server:port> <path>",
             "Load the contents of a local directory (made by dump) into glance: "
             "missing images are uploaded keeping their id, the metadata of "
             "present ones is updated when it differs."),
    "livecopy": ("livecopy <master:port> <slave:port>",
                 "Load the contents of one glance instance into another: active "
                 "images missing on the slave are streamed from the master, the "
                 "metadata of images on both is updated when it differs."),
    "compare": ("compare <master:port> <slave:port>",
                "Compare the contents of the master with those of the slave: log "
                "every field that differs and every active image the slave lacks."),
    "help": ("help <command>", "Output help for one of the commands."),
}
ARG_COUNT = {"size": 1, "dump": 2, "load": 2, "livecopy": 2, "compare": 2}


def commands_text() -> str:
    lines = ["Commands:", ""]
    for name in ("help", "compare", "dump", "livecopy", "load", "size"):
        lines.append("    %-10s %s" % (name, COMMAND_HELP[name][1].split(":")[0]))
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, usage="%(prog)s [options] <command> <args...>",
        description="Copy images between glance-api v1 endpoints.",
        epilog=commands_text(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=VERSION)
    parser.add_argument("-c", "--chunksize", type=int, default=replicator.CHUNK_SIZE,
                        help="Amount of data to transfer per read and write.")
    parser.add_argument("-D", "--dontreplicate", default=replicator.DEFAULT_DONTREPLICATE,
                        help="Space separated fields not to replicate.")
    parser.add_argument("-m", "--metaonly", action="store_true",
                        help="Only replicate metadata, not images.")
    parser.add_argument("-t", "--token", default="",
                        help="Token for both the master and the slave.")
    parser.add_argument("-M", "--mastertoken", default="",
                        help="Token for the master.")
    parser.add_argument("-S", "--slavetoken", default="",
                        help="Token for the slave.")
    parser.add_argument("--timeout", type=float, default=replicator.DEFAULT_TIMEOUT,
                        help="Seconds to wait for a server.")
    parser.add_argument("--debug", "-d", action="store_true", help="Log debug messages.")
    parser.add_argument("--verbose", "-v", action="store_true", help="Log progress details.")
    parser.add_argument("--log-file", help="Log to this file instead of stderr.")
    parser.add_argument("command", nargs="?", help="Command to run.")
    parser.add_argument("args", nargs="*", help="Arguments of the command.")
    return parser


def split_args(command: str, args: list[str]) -> list[str]:
    """Accept Glance 11.0.2's single comma-separated word for two arguments.

    Only the first comma splits, so a path may contain commas.
    """
    if ARG_COUNT.get(command) == 2 and len(args) == 1 and "," in args[0]:
        first, _, rest = args[0].partition(",")
        return [first, rest]
    return args


def setup_logging(debug: bool, verbose: bool, log_file: str | None) -> None:
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    handler: logging.Handler = (logging.FileHandler(log_file) if log_file
                                else logging.StreamHandler(sys.stderr))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"
                                           if log_file else "%(levelname)s %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # urllib3 at debug level would log every chunk's connection details.
    logging.getLogger("urllib3").setLevel(logging.INFO if debug else logging.WARNING)


def usage_error(parser: argparse.ArgumentParser, command: str | None, message: str) -> int:
    if command in COMMAND_HELP:
        print("Usage: %s %s" % (PROG, COMMAND_HELP[command][0]), file=sys.stderr)
    else:
        parser.print_usage(sys.stderr)
        print(commands_text(), file=sys.stderr)
    print("ERROR: %s" % message, file=sys.stderr)
    return EXIT_ERROR


def print_help(args: list[str]) -> int:
    if len(args) != 1:
        print(commands_text())
        return EXIT_ERROR if args else EXIT_OK
    entry = COMMAND_HELP.get(args[0])
    if entry is None:
        print("ERROR: Unknown command: %s" % args[0], file=sys.stderr)
        return EXIT_ERROR
    print("%s %s\n\n    %s" % (PROG, entry[0], entry[1]))
    return EXIT_OK


def _report(outcome: replicator.Outcome, command: str) -> int:
    print("%s: %s" % (command, outcome.summary()))
    for image_id, reason in outcome.failed.items():
        print("ERROR: %s: %s" % (image_id, reason), file=sys.stderr)
    return EXIT_ERROR if outcome.failed else EXIT_OK


def run(command: str, args: list[str], opts: argparse.Namespace) -> int:
    """Run one command; raises ValueError (bad endpoint), ReplicatorError."""
    master_token = opts.mastertoken or opts.token
    slave_token = opts.slavetoken or opts.token
    worker = replicator.Replicator(
        replicator.Options(chunk_size=opts.chunksize,
                           dontreplicate=replicator.parse_fields(opts.dontreplicate),
                           metaonly=opts.metaonly),
        sys.stderr)

    def endpoint(address: str, token: str) -> replicator.Endpoint:
        return replicator.Endpoint(address, token, timeout=opts.timeout)

    if command == "size":
        total, count = worker.size(endpoint(args[0], master_token))
        print("Total size is %d bytes across %d images" % (total, count))
        return EXIT_OK
    if command == "dump":
        return _report(worker.dump(endpoint(args[0], master_token), args[1]), command)
    if command == "load":
        server = endpoint(args[0], slave_token)
        if not os.path.isdir(args[1]):
            raise ValueError("%s is not a directory" % args[1])
        return _report(worker.load(server, args[1]), command)
    master = endpoint(args[0], master_token)
    slave = endpoint(args[1], slave_token)
    if command == "livecopy":
        return _report(worker.livecopy(master, slave), command)
    outcome = worker.compare(master, slave)
    missing = sum(1 for v in outcome.differing.values() if v == "missing")
    print("compare: %d identical, %d differ, %d missing on the slave"
          % (len(outcome.unchanged), len(outcome.differing) - missing, missing))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    opts = parser.parse_intermixed_args(list(argv) if argv is not None else None)
    setup_logging(opts.debug, opts.verbose, opts.log_file)
    command = opts.command
    if command is None:
        return usage_error(parser, None, "Too few arguments.")
    if command == "help":
        return print_help(opts.args)
    if command not in ARG_COUNT:
        return usage_error(parser, None, "Unknown command: %s" % command)
    if opts.chunksize <= 0:
        return usage_error(parser, command, "--chunksize must be positive")
    args = split_args(command, list(opts.args))
    if len(args) < ARG_COUNT[command]:
        return usage_error(parser, command, "Too few arguments.")
    if len(args) > ARG_COUNT[command]:
        return usage_error(parser, command, "Too many arguments.")
    try:
        return run(command, args, opts)
    except ValueError as err:
        return usage_error(parser, command, str(err))
    except replicator.ReplicatorError as err:
        print("ERROR: %s" % err, file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("ERROR: interrupted; run the command again to finish", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
