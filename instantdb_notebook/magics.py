"""``%instant`` and ``%%instant``: InstantDB from notebook cells.

Load with ``%load_ext instantdb_notebook``. The grammar is documented once, in
docs/notebooks.md; `_magic_args` parses it. Settings are traitlets on `InstantMagic`
(``%config InstantMagic.displaylimit = 50``), also read from ``[tool.instantdb.magic]``
in the nearest ``pyproject.toml`` when the extension loads.

Errors: a bad line is an IPython ``UsageError`` (one line, no traceback). A failed query
raises `InstantMagicError`, which IPython shows as a few lines (the server's message and
hint) instead of a traceback; the original exception is stored in the target variable
when there is one (``df << ...``, ``-o df``), and ``%config InstantMagic.short_errors =
False`` shows full tracebacks. No message, output or repr here contains a token.
"""

from __future__ import annotations

import atexit
import difflib
import html
import importlib
import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import (
    Magics,
    line_cell_magic,
    magics_class,
    needs_local_scope,
    no_var_expand,
)
from traitlets import Bool, Bunch, Enum, Float, Int, TraitError, validate

from instantdb import InstantError

from ._completion import make_matcher
from ._connections import (
    NO_TOKEN_ORIGIN,
    ClientSpec,
    Connection,
    Connections,
    ConnectionSetupError,
    attach_local_server,
    connect_spec,
    env_spec,
    start_local_server,
    token_from_env,
)
from ._errors import ColumnNameClashError, FrameError
from ._magic_args import (
    MagicUsageError,
    ParsedLine,
    evaluate,
    misplaced_options,
    parse_line,
    query_from_text,
    usage,
    with_limit,
)
from ._redact import known_secrets, redact, scrub, shown, token_refused
from ._results import frames_of
from .live import LiveEndedError, live_query, read_stream
from .portal import PortalClosedError

if TYPE_CHECKING:
    import argparse

    from IPython.core.interactiveshell import InteractiveShell

    from instantdb import Instant

__all__ = [
    "InstantMagic",
    "InstantMagicError",
    "load_ipython_extension",
    "unload_ipython_extension",
]

# Options of --all paging that the query itself must not set.
_PAGING_KEYS = ("limit", "offset", "first", "last", "before", "after")


class InstantMagicError(InstantError):
    """A ``%instant`` command failed; IPython shows `lines` instead of a traceback."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines

    def _render_traceback_(self) -> list[str]:
        return self.lines


def _error_lines(error: BaseException, target: str | None) -> list[str]:
    if isinstance(error, ColumnNameClashError) and error.keyword == "sep":
        # The Python remedy (sep=) is an option of the magic.
        lines = [
            f"FrameError: {error.problem}; add --sep {error.example} to the %instant line's "
            f"options (%instant --sep {error.example} QUERY)"
        ]
    else:
        lines = [f"{type(error).__name__}: {error}"]
    hint = getattr(error, "hint", None)
    if hint:
        lines.append(f"  hint: {json.dumps(hint, default=str, ensure_ascii=False)}")
    if target:
        lines.append(f"  (the exception is stored in {target})")
    return [scrub(line) for line in lines]


@magics_class
class InstantMagic(Magics):
    """The ``%instant`` line and cell magic, and its settings."""

    autodataframe = Bool(
        True, help="Return query results as DataFrames; False returns the raw dicts."
    ).tag(config=True)
    displaylimit = Int(
        20, help="Rows shown per namespace in live widgets and HTML snapshots (0: all)."
    ).tag(config=True)
    autolimit = Int(0, help="A limit added to every top-level namespace of a query (0: none).").tag(
        config=True
    )
    page_size = Int(500, help="Entities per request when --all pages through a namespace.").tag(
        config=True
    )
    progress = Bool(True, help="Show how many entities --all has fetched so far.").tag(config=True)
    short_errors = Bool(
        True, help="Show failed queries as the server's message and hint, not a traceback."
    ).tag(config=True)
    displaycon = Bool(
        True, help="Say which app and host a new connection reaches (never the token)."
    ).tag(config=True)
    links = Enum(
        ("nested", "ids", "explode"), "nested", help="What DataFrames do with linked entities."
    ).tag(config=True)
    dtype_backend = Enum(
        ("numpy_nullable", "pyarrow", None),
        "numpy_nullable",
        allow_none=True,
        help="The dtype backend of returned DataFrames (see to_dataframe).",
    ).tag(config=True)
    use_schema = Bool(
        False, help="Type DataFrame columns from the app's schema (fetched once per connection)."
    ).tag(config=True)
    render_interval = Float(
        0.25, help="Seconds between redraws of a live widget (updates in between coalesce)."
    ).tag(config=True)

    # A bad value is refused when it is set (%config, pyproject.toml), with a message
    # saying what fits, rather than failing later in the middle of a command.
    @validate("displaylimit", "autolimit")
    def _at_least_zero(self, proposal: Bunch) -> int:
        value: int = proposal["value"]
        if value < 0:
            name = proposal["trait"].name
            zero = {"displaylimit": "show every row", "autolimit": "add no limit"}[name]
            raise TraitError(f"InstantMagic.{name} must be 0 or more (0: {zero}), got {value}")
        return value

    @validate("page_size")
    def _at_least_one(self, proposal: Bunch) -> int:
        value: int = proposal["value"]
        if value < 1:
            raise TraitError(
                f"InstantMagic.page_size must be at least 1 (entities per request of --all), "
                f"got {value}"
            )
        return value

    @validate("render_interval")
    def _an_interval(self, proposal: Bunch) -> float:
        value: float = proposal["value"]
        if not math.isfinite(value) or value < 0:
            raise TraitError(
                "InstantMagic.render_interval must be a number of seconds, 0 or more (0: "
                f"redraw at every update; the default is 0.25), got {value}"
            )
        return value

    def __init__(self, shell: InteractiveShell | None = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.connections = Connections()
        self._completion_failed: set[str] = set()

    # -- the magic ----------------------------------------------------------------------

    @no_var_expand
    @needs_local_scope
    @line_cell_magic
    def instant(
        self, line: str, cell: str | None = None, local_ns: Mapping[str, Any] | None = None
    ) -> Any:
        """Query, watch or write InstantDB from a cell. ``%instant --help`` lists the
        options; docs/notebooks.md has the whole grammar."""
        try:
            parsed = parse_line(line, cell)
        except MagicUsageError as exc:
            raise UsageError(scrub(str(exc))) from None
        if parsed.options.help:
            print(usage())
            return None
        assert self.shell is not None
        namespace = {**self.shell.user_ns, **(local_ns or {})}
        try:
            value = self._run(parsed, namespace)
        except (MagicUsageError, ConnectionSetupError) as exc:
            self._store(parsed.target, exc)
            raise UsageError(scrub(str(exc))) from None
        except _SHORT_ERRORS as exc:
            self._store(parsed.target, exc)
            # A traceback quotes the cell's line, so one that held a pasted token is
            # shown short whatever the setting.
            if not self.short_errors and not getattr(exc, "hides_a_token", False):
                raise
            raise InstantMagicError(_error_lines(exc, parsed.target)) from None
        if parsed.target is not None:
            self._store(parsed.target, value)
            return value if parsed.display else None
        return value

    def _store(self, target: str | None, value: object) -> None:
        if target is not None:
            assert self.shell is not None
            self.shell.user_ns[target] = value

    def _run(self, parsed: ParsedLine, namespace: Mapping[str, Any]) -> Any:
        options = parsed.options
        if options.connections:
            return self._list_connections()
        if options.close is not None:
            closed = self.connections.close(options.close)
            self._say(f"Closed {closed.alias}.")
            return None
        if options.use is not None:
            connection = self.connections.add(self.connections.get(options.use))
            self._say(f"Using {connection.describe()}")
            if not parsed.query:
                return None
        if options.connect is not None or options.local or options.attach is not None:
            connection = self._connect(options, namespace)
            if self.displaycon:
                self._say(f"Connected: {connection.describe()}")
            if not parsed.query and not options.schema:
                return None
        elif _connect_only(options):
            raise MagicUsageError(
                "--api-uri, --admin-token-env, --prompt-token, --keyring, --no-token, "
                "--data-dir and --alias go with --connect, --local or --attach"
            )

        connection = self.connections.get(options.connection, fallback=self._from_environment)
        spec = self._identity(connection.spec, options)
        if options.schema:
            _check_admin_token(connection, "--schema (the schema is read as admin)")
            return connection.schema(refresh=True)
        if options.stream_id is not None or options.stream_client is not None:
            _check_credentials(connection, spec)
            return self._read_stream(spec, options)
        rule_params = self._rule_params(options.rule_params, namespace)
        if options.transact:
            return self._transact(connection, spec, parsed, namespace, rule_params)

        query = _user_query(parsed.query, namespace)
        _check_combinations(options)
        limit = options.limit if options.limit is not None else (self.autolimit or None)
        if limit is not None and not options.all:
            query = with_limit(query, limit)
        if options.dry_run:
            return query
        _check_credentials(connection, spec)
        frame_options = self._frame_options(connection, options)
        if options.live:
            return _start_live(
                "the live query",
                lambda: live_query(
                    spec,
                    query,
                    rule_params=rule_params,
                    render_interval=self.render_interval,
                    display_limit=self.displaylimit,
                    **frame_options,
                ),
            )
        client = self._client(connection, spec)
        if options.all:
            result = self._fetch_all(client, query, rule_params, options.page_size)
        else:
            result = client.query(query, rule_params=rule_params)
        if options.raw or not self.autodataframe:
            return result
        return frames_of(result, **frame_options)

    # -- connections ----------------------------------------------------------------------

    def _connect(self, options: argparse.Namespace, namespace: Mapping[str, Any]) -> Connection:
        chosen = [
            name
            for name, given in (
                ("--connect", options.connect is not None),
                ("--local", options.local),
                ("--attach", options.attach is not None),
            )
            if given
        ]
        if len(chosen) > 1:
            raise MagicUsageError(f"choose one of {' and '.join(chosen)}")
        token_options = (
            options.admin_token_env is not None
            or options.prompt_token
            or options.keyring is not None
            or options.no_token
        )
        if token_options and options.connect is None:
            raise MagicUsageError(
                "token options (--admin-token-env, --prompt-token, --keyring, --no-token) go "
                "with --connect; a local server's token is read from the server itself"
            )
        if options.data_dir is not None and not options.local:
            raise MagicUsageError("--data-dir goes with --local")
        if options.local:
            spec, server, origin = start_local_server(options.data_dir)
            return self.connections.add(
                Connection(options.alias or "local", spec, origin, server=server)
            )
        if options.attach is not None:
            target: object = options.attach
            if isinstance(target, str) and target.isidentifier() and target in namespace:
                target = namespace[target]
            spec, origin = attach_local_server(target)
            return self.connections.add(Connection(options.alias or "local", spec, origin))
        if options.connect:
            if options.connect.strip() in known_secrets():
                raise MagicUsageError(token_refused("The app id given to --connect"))
            spec, origin = connect_spec(
                options.connect,
                api_uri=options.api_uri,
                token_env=options.admin_token_env,
                prompt=options.prompt_token,
                keyring_service=options.keyring,
                no_token=options.no_token,
            )
        elif token_options:
            spec, origin = connect_spec(
                _env_app_id(),
                api_uri=options.api_uri,
                token_env=options.admin_token_env,
                prompt=options.prompt_token,
                keyring_service=options.keyring,
                no_token=options.no_token,
            )
        else:
            spec, origin = env_spec(), "from the environment"
            if options.api_uri is not None:
                spec = ClientSpec(spec.app_id, options.api_uri.rstrip("/"), spec.admin_token)
        alias = options.alias or ("default" if not options.connect else options.connect)
        return self.connections.add(Connection(alias, spec, origin))

    def _from_environment(self) -> Connection:
        return Connection("default", env_spec(), "from the environment")

    def _list_connections(self) -> None:
        current = self.connections.current
        lines = [
            f"{'*' if connection is current else ' '} {connection.describe()}"
            for connection in self.connections.all()
        ]
        self._say("\n".join(lines) if lines else "No connections yet.")

    def _identity(self, spec: ClientSpec, options: argparse.Namespace) -> ClientSpec:
        given = [
            name
            for name, present in (
                ("--as-email", options.as_email is not None),
                ("--guest", options.guest),
                ("--token-env", options.token_env is not None),
            )
            if present
        ]
        if not given:
            return spec
        if len(given) > 1:
            raise MagicUsageError(f"act as one user at a time: {' and '.join(given)}")
        if options.as_email is not None:
            return spec.as_user(email=options.as_email)
        if options.guest:
            return spec.as_user(guest=True)
        token = token_from_env(options.token_env, purpose="--token-env (a user's refresh token)")
        return spec.as_user(token=token)

    def _client(self, connection: Connection, spec: ClientSpec) -> Instant:
        client: Instant = spec.impersonate(connection.client())
        return client

    # -- commands ---------------------------------------------------------------------------

    def _rule_params(self, text: str | None, namespace: Mapping[str, Any]) -> Any:
        if text is None:
            return None
        name = text.strip().lstrip("$")
        value = namespace[name] if name.isidentifier() and name in namespace else None
        if value is None:
            value = _evaluate_user_code(text, namespace)
        if not isinstance(value, Mapping):
            raise MagicUsageError(
                f"--rule-params must be a dict (JSON, a Python expression or a variable), "
                f"got {type(value).__name__}"
            )
        return dict(value)

    def _transact(
        self,
        connection: Connection,
        spec: ClientSpec,
        parsed: ParsedLine,
        namespace: Mapping[str, Any],
        rule_params: Any,
    ) -> Any:
        options = parsed.options
        if options.live or options.all or options.limit is not None or options.dry_run:
            raise MagicUsageError("--transact takes no --live, --all, --limit or --dry-run")
        if not parsed.query:
            raise MagicUsageError(
                "--transact needs chunks: %%instant --transact, then a body such as "
                '[tx.goals[id()].update({"title": "Ship"})]'
            )
        _check_credentials(connection, spec)
        client = self._client(connection, spec)
        from instantdb import id as new_id
        from instantdb import lookup

        extras = {"tx": client.tx, "id": new_id, "lookup": lookup, "db": client}
        chunks = _evaluate_user_code(parsed.query, namespace, extras)
        return client.transact(chunks, rule_params=rule_params)

    def _read_stream(self, spec: ClientSpec, options: argparse.Namespace) -> Any:
        if options.stream_id is not None and options.stream_client is not None:
            raise MagicUsageError("give --stream-id or --stream-client, not both")
        return _start_live(
            "the stream",
            lambda: read_stream(
                spec,
                stream_id=options.stream_id,
                client_id=options.stream_client,
                byte_offset=options.byte_offset,
                render_interval=self.render_interval,
            ),
        )

    def _frame_options(self, connection: Connection, options: argparse.Namespace) -> dict[str, Any]:
        frame_options: dict[str, Any] = {
            "links": options.links or self.links,
            "dtype_backend": self.dtype_backend,
        }
        if options.sep is not None:
            frame_options["sep"] = options.sep
        if self.use_schema:
            frame_options["schema"] = connection.schema()
        return frame_options

    def _fetch_all(
        self, client: Instant, query: Mapping[str, Any], rule_params: Any, page_size: int | None
    ) -> dict[str, Any]:
        size = page_size or self.page_size  # both are at least 1 (parser, trait)
        progress = _Progress(enabled=self.progress)
        result: dict[str, Any] = {}
        for namespace, subquery in query.items():
            options = subquery.get("$") or {}
            clash = [key for key in _PAGING_KEYS if key in options]
            if clash:
                raise MagicUsageError(
                    f"--all pages through {namespace!r} with limit and offset itself; remove "
                    f"{', '.join(clash)} from the query"
                )
            rows: list[Any] = []
            pages = 0
            while True:
                page_query = {
                    namespace: {**subquery, "$": {**options, "limit": size, "offset": len(rows)}}
                }
                page = client.query(page_query, rule_params=rule_params).get(namespace, [])
                if len(page) > size:
                    raise MagicUsageError(
                        f"the server returned {len(page)} entities for a page of {size}: it "
                        "ignores limit, so --all cannot page through it"
                    )
                rows.extend(page)
                pages += 1
                progress.update(namespace, len(rows), pages, done=len(page) < size)
                if len(page) < size:
                    break
            result[namespace] = rows
        return result

    def _say(self, text: str) -> None:
        print(scrub(text))

    # -- completion and configuration ----------------------------------------------------

    def schema_for_completion(self) -> Mapping[str, Any] | None:
        connection = self.connections.current
        if connection is None:
            return None
        if connection.cached_schema is not None:
            return connection.cached_schema
        if connection.alias in self._completion_failed:
            return None
        try:
            return connection.schema()
        except Exception:
            # Say nothing in the middle of typing; %instant --schema shows the error.
            self._completion_failed.add(connection.alias)
            return None

    def load_project_config(self, start: Path | None = None) -> Path | None:
        """Apply ``[tool.instantdb.magic]`` from the nearest ``pyproject.toml``."""
        found = _nearest_pyproject(start or Path.cwd())
        if found is None:
            return None
        try:
            tomllib = importlib.import_module("tomllib")
        except ImportError:  # Python 3.10: tomli, if installed
            try:
                tomllib = importlib.import_module("tomli")
            except ImportError:
                print(f"{found}: install tomli to read [tool.instantdb.magic] on Python 3.10")
                return None
        with found.open("rb") as file:
            table = tomllib.load(file).get("tool", {}).get("instantdb", {}).get("magic")
        if not isinstance(table, dict):
            return None
        known = set(self.class_trait_names(config=True))
        for key, value in table.items():
            if key not in known:
                close = difflib.get_close_matches(key, sorted(known), n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                self._say(f"{found}: [tool.instantdb.magic] has no setting {shown(key)}{hint}")
                continue
            try:
                setattr(self, key, value)
            except TraitError as exc:
                # The message quotes the value, which is the user's text.
                self._say(f"{found}: [tool.instantdb.magic] {key} is not used: {redact(str(exc))}")
        return found


class CellCodeError(InstantError):
    """The query, chunks or rule params expression of a cell raised (see ``__cause__``).

    When the original exception's message would repeat something token-shaped the user
    typed (``name 'ab12cd34' is not defined``), it is not kept as the cause, and
    `hides_a_token` is true: the error is then shown short even with
    ``InstantMagic.short_errors = False``, as a traceback would quote the cell's line.
    """

    def __init__(self, message: str, *, hides_a_token: bool = False) -> None:
        super().__init__(message)
        self.hides_a_token = hides_a_token


class LiveStartError(InstantError):
    """A live query or stream could not be started; the cause is ``__cause__``."""


# Failures of the command itself, shown as a few lines. Anything else is a bug and keeps
# its traceback.
_SHORT_ERRORS: tuple[type[BaseException], ...] = (
    InstantError,
    FrameError,
    LiveEndedError,
    PortalClosedError,
    TimeoutError,
    CellCodeError,
)


def _evaluate_user_code(
    text: str, namespace: Mapping[str, Any], extras: Mapping[str, Any] | None = None
) -> Any:
    try:
        return evaluate(text, namespace, extras)
    except MagicUsageError:
        raise
    except Exception as exc:
        failure = exc
    # Raised outside the except block, so a cause that is dropped is not the context.
    raise _cell_code_error(f"evaluating {shown(text)} raised", text, failure)


def _user_query(text: str, namespace: Mapping[str, Any]) -> dict[str, Any]:
    try:
        return query_from_text(text, namespace)
    except MagicUsageError:
        raise
    except Exception as exc:
        failure = exc
    raise _cell_code_error("the cell's expression raised", text, failure)


def _cell_code_error(what: str, text: str, failure: Exception) -> MagicUsageError | CellCodeError:
    misplaced = misplaced_options(text)
    if misplaced is not None:
        return misplaced
    message = str(failure)
    safe = redact(message, typed=text)
    hides_a_token = safe != message
    error = CellCodeError(f"{what} {type(failure).__name__}: {safe}", hides_a_token=hides_a_token)
    if not hides_a_token:
        error.__cause__ = failure
    return error


def _start_live(what: str, start: Callable[[], Any]) -> Any:
    """``start()``, with anything unexpected it raises shown in a few lines."""
    try:
        return start()
    except Exception as exc:
        raise LiveStartError(
            f"could not start {what}: {type(exc).__name__}: {redact(str(exc))}"
        ) from exc


def _check_admin_token(connection: Connection, what: str) -> None:
    if not connection.spec.admin_token:
        raise MagicUsageError(
            f"{what} needs the admin token, and the connection {connection.alias} has none "
            f"({_why_no_token(connection)}). Connect with one: %instant --connect APP_ID "
            "--admin-token-env VAR (or --prompt-token, or --keyring SERVICE)."
        )


def _why_no_token(connection: Connection) -> str:
    if connection.origin == NO_TOKEN_ORIGIN:
        return "it was made with --no-token"
    return f"made {connection.origin}, which holds no admin token"


def _check_credentials(connection: Connection, spec: ClientSpec) -> None:
    """Refuse, with the magic's options, a request the SDK would refuse for lack of a
    token (its message speaks of admin_token= and as_user())."""
    if connection.spec.admin_token:
        return
    if spec.impersonation is None:
        raise MagicUsageError(
            f"the connection {connection.alias} has no admin token "
            f"({_why_no_token(connection)}), "
            "so it can only act as a user: add --guest (a signed-out guest) or --token-env "
            "VAR (the user whose refresh token is in $VAR); --as-email needs the admin "
            "token too. To act as admin, connect with one: %instant --connect APP_ID "
            "--admin-token-env VAR (or --prompt-token, or --keyring SERVICE)."
        )
    if spec.impersonation[0] == "email":
        _check_admin_token(connection, "--as-email")


def _connect_only(options: argparse.Namespace) -> bool:
    return (
        options.api_uri is not None
        or options.admin_token_env is not None
        or options.prompt_token
        or options.keyring is not None
        or options.no_token
        or options.data_dir is not None
        or options.alias is not None
    )


def _check_combinations(options: argparse.Namespace) -> None:
    if options.live and options.all:
        raise MagicUsageError("--live shows everything the query matches already; drop --all")
    if options.all and options.limit is not None:
        raise MagicUsageError("--all fetches everything: drop --limit (or drop --all)")
    if options.page_size is not None and not options.all:
        raise MagicUsageError("--page-size goes with --all")
    if options.live and options.raw:
        raise MagicUsageError("--live shows DataFrames; use the handle's .data for the raw result")


def _env_app_id() -> str:
    return env_spec().app_id


def _nearest_pyproject(start: Path) -> Path | None:
    for directory in (start, *start.parents):
        candidate = directory / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


class _Progress:
    """A display that says how many entities ``--all`` fetched; updated in place."""

    def __init__(self, *, enabled: bool) -> None:
        self._enabled = enabled
        self._handle: Any = None

    def update(self, namespace: str, rows: int, pages: int, *, done: bool) -> None:
        if not self._enabled:
            return
        from IPython.display import display

        pages_text = f"{pages} page{'' if pages == 1 else 's'}"
        text = f"{namespace}: {rows:,} entities fetched ({pages_text}){'' if done else ' …'}"
        bar = "" if done else "<progress></progress> "
        bundle = {"text/plain": text, "text/html": f"<small>{bar}{html.escape(text)}</small>"}
        if self._handle is None:
            self._handle = display(bundle, raw=True, display_id=True)  # type: ignore[no-untyped-call]
        else:
            self._handle.update(bundle, raw=True)


# -- loading ----------------------------------------------------------------------------------

_loaded: dict[int, tuple[InstantMagic, Callable[..., Any]]] = {}


def load_ipython_extension(shell: InteractiveShell) -> None:
    """``%load_ext instantdb_notebook``: register the magic, its settings and completion."""
    if id(shell) in _loaded:
        return
    magic = InstantMagic(shell=shell)
    shell.register_magics(magic)
    configurables: list[Any] = shell.configurables
    if magic not in configurables:
        configurables.append(magic)
    matcher = make_matcher(magic.schema_for_completion)
    shell.Completer.custom_matchers.append(matcher)
    magic.load_project_config()
    # Local servers the extension started stop with the kernel.
    atexit.register(magic.connections.close_all)
    _loaded[id(shell)] = (magic, matcher)


def unload_ipython_extension(shell: InteractiveShell) -> None:
    """``%unload_ext instantdb_notebook``: close connections and remove completion."""
    loaded = _loaded.pop(id(shell), None)
    if loaded is None:
        return
    magic, matcher = loaded
    if matcher in shell.Completer.custom_matchers:
        shell.Completer.custom_matchers.remove(matcher)
    configurables: list[Any] = shell.configurables
    if magic in configurables:
        configurables.remove(magic)
    magic.connections.close_all()
    atexit.unregister(magic.connections.close_all)
    shell.magics_manager.magics["line"].pop("instant", None)
    shell.magics_manager.magics["cell"].pop("instant", None)


def magic_of(shell: InteractiveShell) -> InstantMagic | None:
    """The loaded `InstantMagic` of ``shell`` (for tests and advanced use)."""
    loaded = _loaded.get(id(shell))
    return loaded[0] if loaded else None
