"""``instantdb-local``: run a local Instant-compatible server.

    instantdb-local serve [--host 127.0.0.1] [--port 8888] [--data .instant-local] [--project .]
    instantdb-local env [--data .instant-local]
    instantdb-local run [--data .instant-local] [--port 0] [--project .] -- CMD ARGS...
    instantdb-local init DIR [--data DIR/.instant-local] [--force]

``serve`` and ``env`` print three ``export`` lines first, so a shell can take the
credentials with ``eval "$(instantdb-local env)"``.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from datetime import timedelta
from importlib import resources
from pathlib import Path

from instantdb_local.errors import LocalServerError, missing_extra_message
from instantdb_local.instance import (
    DEFAULT_DATA_DIR,
    DEFAULT_EPHEMERAL_TTL,
    DEFAULT_HOST,
    DEFAULT_PORT,
    Instance,
    api_uri,
    exposure_warning,
    is_loopback,
)

logger = logging.getLogger("instantdb_local")

_BANNER = """\
instantdb-local: serving app {app_id} at {api_uri}
  data:     {data_dir}
  project:  {project}
  Local only: magic-code emails are not sent. Not implemented, answering 501 unsupported:
{unsupported}
  See docs/local-server.md. Stop with Ctrl-C.
"""

_STARTER_FILES = {
    "main.py": "main.py.tmpl",
    ".env": "env.tmpl",
    "instant.schema.ts": "instant.schema.ts.tmpl",
    "instant.perms.ts": "instant.perms.ts.tmpl",
    "README.md": "README.md.tmpl",
    ".gitignore": "gitignore.tmpl",
}


class CommandError(Exception):
    """A failure to report as one line on stderr, without a traceback."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except CommandError as exc:
        print(f"instantdb-local: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="instantdb-local",
        description="A local, Instant-compatible server on SQLite.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the server in the foreground")
    _add_address_options(serve, default_port=DEFAULT_PORT)
    _add_data_option(serve)
    _add_project_option(serve)
    _add_ephemeral_option(serve)
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="server log verbosity on stderr (default: info)",
    )
    serve.set_defaults(handler=_serve)

    env = commands.add_parser("env", help="print the export lines for an existing data dir")
    _add_data_option(env)
    env.set_defaults(handler=_env)

    run = commands.add_parser(
        "run", help="start a server, run a command against it, stop the server"
    )
    _add_address_options(run, default_port=0)
    _add_data_option(run)
    _add_project_option(run)
    _add_ephemeral_option(run)
    run.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ARGS", help="the command")
    run.set_defaults(handler=_run)

    init = commands.add_parser("init", help="write a starter project for the local server")
    init.add_argument("directory", type=Path, metavar="DIR")
    init.add_argument(
        "--data",
        type=Path,
        default=None,
        help="data dir whose credentials .env gets (default: DIR/.instant-local, created)",
    )
    init.add_argument("--force", action="store_true", help="overwrite existing files")
    init.set_defaults(handler=_init)
    return parser


def _add_address_options(parser: argparse.ArgumentParser, *, default_port: int) -> None:
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help=f"address to bind (default: {DEFAULT_HOST})"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=default_port,
        help=f"port to bind, 0 for any free port (default: {default_port})",
    )


def _add_data_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help=f"data directory (default: {DEFAULT_DATA_DIR})",
    )


def _add_project_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--project",
        type=Path,
        default=Path("."),
        help="directory with instant.schema.ts / instant.perms.ts (default: .)",
    )


def _export_lines(app_id: str, admin_token: str, uri: str) -> str:
    return (
        f"export INSTANT_APP_ID={app_id}\n"
        f"export INSTANT_APP_ADMIN_TOKEN={admin_token}\n"
        f"export INSTANT_API_URI={uri}\n"
    )


# Kept under its old name for callers of the CLI module.
_is_loopback = is_loopback


def _configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    for name, name_level in (("instantdb_local", level), ("uvicorn", "warning")):
        named = logging.getLogger(name)
        named.handlers[:] = [handler]
        named.setLevel(name_level.upper())
        named.propagate = False


def _add_ephemeral_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ephemeral-days",
        type=_positive_days,
        default=DEFAULT_EPHEMERAL_TTL,
        metavar="DAYS",
        help="how long apps made by POST /dash/apps/ephemeral live (default: 14)",
    )


def _positive_days(text: str) -> timedelta:
    try:
        days = float(text)
    except ValueError:
        days = 0
    if not days > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of days, got {text!r}")
    return timedelta(days=days)


def _open_instance(
    data: Path,
    project: Path | None,
    ephemeral_ttl: timedelta = DEFAULT_EPHEMERAL_TTL,
    *,
    exclusive: bool = True,
) -> Instance:
    try:
        return Instance.open(
            data, project_dir=project, ephemeral_ttl=ephemeral_ttl, exclusive=exclusive
        )
    except (LocalServerError, OSError, RuntimeError, ValueError) as exc:
        raise CommandError(_describe(exc)) from exc


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


# -- serve ----------------------------------------------------------------------------------


def banner(app_id: str, uri: str, data_dir: Path, project: Path | None) -> str:
    """What ``serve`` writes on stderr once it listens. The routes it lists as not
    implemented come from the table of those routes, so the list cannot go stale."""
    from instantdb_local.routes.unsupported import PENDING

    by_feature: dict[str, list[str]] = {}
    for methods, path, feature in PENDING:
        by_feature.setdefault(feature, []).extend(f"{method} {path}" for method in methods)
    unsupported = "\n".join(
        f"    {feature}: {', '.join(routes)}" for feature, routes in by_feature.items()
    )
    return _BANNER.format(
        app_id=app_id, api_uri=uri, data_dir=data_dir, project=project, unsupported=unsupported
    )


def _import_the_server(command: str) -> None:
    """Import what serving needs, so a missing optional dependency is one clear line
    before anything starts, not a traceback from deep inside."""
    try:
        import uvicorn  # noqa: F401

        import instantdb_local.app
        import instantdb_local.server  # noqa: F401
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] in ("instantdb", "instantdb_local"):
            raise  # a broken install of this package, not a missing extra
        raise CommandError(missing_extra_message(command, exc.name)) from None
    # Rules are compiled with cel-python on first use; looked up, not imported (0.1 s).
    try:
        found = importlib.util.find_spec("celpy") is not None
    except ImportError:
        found = False
    if not found:
        raise CommandError(missing_extra_message(command, "celpy"))


def _serve(args: argparse.Namespace) -> int:
    _import_the_server("instantdb-local serve")
    from instantdb_local.app import create_app
    from instantdb_local.server import bind_socket, uvicorn_server

    _configure_logging(args.log_level)
    instance = _open_instance(args.data, args.project, args.ephemeral_days)
    try:
        try:
            sock = bind_socket(args.host, args.port)
        except OSError as exc:
            raise CommandError(str(exc.strerror or exc)) from exc
        port = int(sock.getsockname()[1])
        uri = api_uri(args.host, port)
        instance.record_address(args.host, port)
        app = instance.default_app
        sys.stdout.write(_export_lines(app.id, app.admin_token, uri))
        sys.stdout.flush()
        sys.stderr.write(banner(app.id, uri, instance.data_dir, instance.project_dir))
        if not is_loopback(args.host):
            sys.stderr.write(exposure_warning(args.host) + "\n")
        sys.stderr.flush()
        # uvicorn's own start/stop chatter only when debugging.
        uvicorn_level = "debug" if args.log_level == "debug" else "warning"
        server = uvicorn_server(create_app(instance), log_level=uvicorn_level)
        # uvicorn handles Ctrl-C and SIGTERM itself in the main thread.
        server.run(sockets=[sock])
        sock.close()
    finally:
        instance.close()
    return 0


# -- env ------------------------------------------------------------------------------------


def _env(args: argparse.Namespace) -> int:
    data: Path = args.data
    if not (data / "instance.sqlite3").is_file():
        raise CommandError(
            f"no local Instant data in {data}. Start a server first: "
            f"instantdb-local serve --data {data}"
        )
    # Usually run next to the server on that directory: it reads, so it takes no lock.
    with _open_instance(data, None, exclusive=False) as instance:
        app = instance.default_app
        uri = instance.last_api_uri() or api_uri(DEFAULT_HOST, DEFAULT_PORT)
        sys.stdout.write(_export_lines(app.id, app.admin_token, uri))
    return 0


# -- run ------------------------------------------------------------------------------------


def _run(args: argparse.Namespace) -> int:
    _import_the_server("instantdb-local run")
    from instantdb_local.server import LocalServer

    command = list(args.cmd)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise CommandError("run needs a command: instantdb-local run -- CMD ARGS...")
    _configure_logging("warning")
    server = LocalServer(
        data_dir=args.data,
        port=args.port,
        host=args.host,
        project_dir=args.project,
        ephemeral_ttl=args.ephemeral_days,
    )
    try:
        server.start()
    except (LocalServerError, OSError, RuntimeError, ValueError) as exc:
        raise CommandError(_describe(exc)) from exc
    try:
        env = {**os.environ, **server.env}
        try:
            process = subprocess.Popen(command, env=env)
        except OSError as exc:
            raise CommandError(f"cannot run {command[0]!r}: {exc.strerror or exc}") from exc
        code = _wait_forwarding_signals(process)
    finally:
        server.stop()
    # A command killed by a signal exits the way a shell reports it.
    return code if code >= 0 else 128 - code


def _wait_forwarding_signals(process: subprocess.Popen[bytes]) -> int:
    # SIGTERM (from CI or a supervisor) is passed on, so the command ends first and the
    # server is still stopped cleanly afterwards.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: process.terminate())
    try:
        interrupted = False
        while True:
            try:
                return process.wait()
            except KeyboardInterrupt:
                # The command got the same Ctrl-C: let it finish before stopping the
                # server. A second Ctrl-C means it will not, so end it.
                if interrupted:
                    process.kill()
                interrupted = True
    finally:
        signal.signal(signal.SIGTERM, previous)


# -- init -----------------------------------------------------------------------------------


def _init(args: argparse.Namespace) -> int:
    target: Path = args.directory
    if target.exists() and not target.is_dir():
        raise CommandError(f"{target} exists and is not a directory")
    existing = [name for name in _STARTER_FILES if (target / name).exists()]
    if existing and not args.force:
        raise CommandError(
            f"{', '.join(existing)} already exist in {target}; pass --force to overwrite"
        )
    target.mkdir(parents=True, exist_ok=True)
    data: Path = args.data if args.data is not None else target / DEFAULT_DATA_DIR
    # Only reads the credentials (making them if the directory is new), so it also works
    # on the directory of a running server.
    with _open_instance(data, None, exclusive=False) as instance:
        app = instance.default_app
        uri = instance.last_api_uri() or api_uri(DEFAULT_HOST, DEFAULT_PORT)
        data_dir = instance.data_dir
    # The README and .env name the data dir relative to the project when it is inside it.
    shown_data = (
        data_dir.relative_to(target.resolve())
        if data_dir.is_relative_to(target.resolve())
        else data_dir
    )
    values = {
        "{app_id}": app.id,
        "{admin_token}": app.admin_token,
        "{api_uri}": uri,
        "{data_dir}": str(shown_data),
        "{name}": target.resolve().name,
    }
    templates = resources.files("instantdb_local") / "starter"
    for name, template in _STARTER_FILES.items():
        text = (templates / template).read_text(encoding="utf-8")
        for key, value in values.items():
            text = text.replace(key, value)
        # .env holds the admin token, so it is never readable by others, even briefly.
        _write_file(target / name, text, mode=0o600 if name == ".env" else 0o644)
    print(f"Wrote {', '.join(_STARTER_FILES)} to {target}", file=sys.stderr)
    print(
        f"Next: cd {target} && instantdb-local run --data {shown_data} -- python main.py",
        file=sys.stderr,
    )
    return 0


def _write_file(path: Path, text: str, *, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    path.chmod(mode)  # O_CREAT's mode is filtered by the umask and ignored for old files


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
