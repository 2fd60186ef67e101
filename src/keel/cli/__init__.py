"""keel.cli: the ``keel`` command, a thin skin over the Python API."""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["app", "main", "run"]


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit status.

    Usage mistakes print the usage line and exit 2 (Click's convention); keel's own errors,
    and the operating system's (a path that cannot be made or read), print one line and exit
    2 for bad input or 1 otherwise. Nothing prints a traceback unless keel itself is broken.
    """
    # importing them registers their commands
    from keel.cli import (  # noqa: F401
        _audit_cmds,
        _card_cmds,
        _deploy_cmds,
        _export_cmds,
        _mitigate_cmds,
        _monitor_cmds,
        _pipeline_cmds,
        _score_cmds,
        _serve_cmds,
        _store_cmds,
        _ui_cmds,
    )
    from keel.cli._app import app
    from keel.cli._render import err_console
    from keel.errors import InvalidInput, KeelError

    try:
        app(args=argv, prog_name="keel", standalone_mode=True)
    except SystemExit as exc:  # standalone mode ends every run, errors included, this way
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except KeelError as exc:
        err_console.print(f"[red]error[/red] ({exc.code}): {exc}", highlight=False, soft_wrap=True)
        return 2 if isinstance(exc, InvalidInput) else 1
    except OSError as exc:
        where = f" {exc.filename!r}" if exc.filename else ""
        err_console.print(
            f"[red]error[/red] (os_error):{where} {exc.strerror or exc}", soft_wrap=True
        )
        return 1
    return 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


def __getattr__(name: str) -> Any:
    if name == "app":
        from keel.cli._app import app

        return app
    raise AttributeError(name)


if __name__ == "__main__":  # pragma: no cover
    run()
