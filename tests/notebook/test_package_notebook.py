"""The notebook package's import cost and its shutdown at interpreter exit."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import instantdb_notebook
from instantdb_notebook._connections import ClientSpec


def run_python(code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )


def test_importing_loads_no_ipython_ipywidgets_or_pandas() -> None:
    completed = run_python(
        """
        import sys, instantdb_notebook
        heavy = ("IPython", "ipywidgets", "pandas", "pyarrow", "traitlets")
        print(",".join(m for m in heavy if m in sys.modules))
        """
    )
    assert completed.stdout.strip() == ""


def test_lazy_exports_resolve() -> None:
    assert instantdb_notebook.LiveQueryWidget.__name__ == "LiveQueryWidget"
    assert instantdb_notebook.InstantMagic.__name__ == "InstantMagic"
    for name in instantdb_notebook.__all__:
        assert getattr(instantdb_notebook, name) is not None


def test_live_work_is_cleaned_up_at_interpreter_exit(tmp_path: Path) -> None:
    marker = tmp_path / "cleaned"
    completed = run_python(
        f"""
        import asyncio
        from instantdb_notebook import LiveQuery

        async def forever():
            try:
                yield {{"type": "ok", "data": {{"goals": []}}}}
                await asyncio.sleep(3600)
            finally:
                open({str(marker)!r}, "w").write("closed")

        live = LiveQuery(forever)
        live.wait_for(timeout=10)
        print(live.status)
        """,
        timeout=30,
    )
    # The process ended on its own (atexit closed the portal) and the subscription's
    # cleanup ran on the portal loop before it stopped.
    assert completed.stdout.strip() == "connected"
    assert marker.read_text() == "closed"


def test_client_spec_repr_and_description_show_no_token() -> None:
    spec = ClientSpec(app_id="app-1", api_uri="http://127.0.0.1:1", admin_token="s3cr3t-admin")
    user = spec.as_user(token="s3cr3t-refresh")
    for text in (repr(spec), repr(user), spec.describe(), user.describe()):
        assert "s3cr3t" not in text
    assert user.describe() == "app app-1 at http://127.0.0.1:1 as the user of a refresh token"


def test_every_exception_the_notebook_layer_defines_is_an_instant_error() -> None:
    # One `except InstantError` catches every failure of the SDK and the notebook layer.
    import importlib
    import inspect
    import pkgutil

    from instantdb import InstantError

    modules = [
        importlib.import_module(f"instantdb_notebook.{info.name}")
        for info in pkgutil.iter_modules(instantdb_notebook.__path__)
    ]
    exceptions = {
        cls
        for module in modules
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, Exception)
        and not issubclass(cls, Warning)
        and cls.__module__.startswith("instantdb_notebook")
    }
    assert len(exceptions) >= 8, exceptions  # the walk found the layer's errors
    outside = sorted(cls.__qualname__ for cls in exceptions if not issubclass(cls, InstantError))
    assert outside == []
