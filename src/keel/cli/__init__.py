"""keel.cli: the ``keel`` command, a thin skin over the Python API."""

from __future__ import annotations

import sys

__all__ = ["app", "main"]


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; keel's own errors print one clear line and exit 2 (bad input) or 1."""
    from keel.cli._app import app
    from keel.cli._render import err_console
    from keel.errors import InvalidInput, KeelError

    try:
        app(args=argv, standalone_mode=False)
    except KeelError as exc:
        err_console.print(f"[red]error[/red] ({exc.code}): {exc}", highlight=False, soft_wrap=True)
        return 2 if isinstance(exc, InvalidInput) else 1
    except SystemExit as exc:  # pragma: no cover - typer's own exits
        return int(exc.code or 0)
    except Exception as exc:
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            return exc.exit_code
        if isinstance(exc, click.exceptions.Abort):
            return 130
        raise
    return 0


def __getattr__(name: str):  # type: ignore[no-untyped-def]
    if name == "app":
        from keel.cli._app import app

        return app
    raise AttributeError(name)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
