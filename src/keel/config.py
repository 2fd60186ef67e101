"""Every setting keel reads, declared once: name, type, default and a line of documentation.

Environment variables are ``KEEL_*``. Read them through :func:`get` so the default and the
parsing live here and nowhere else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from keel.errors import InvalidInput

__all__ = ["SETTINGS", "Setting", "get", "get_int"]


@dataclass(frozen=True)
class Setting:
    name: str
    type: type
    default: object
    doc: str


SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in [
        Setting(
            "KEEL_STORE",
            str,
            "",
            "Metadata store URL. Empty: a SQLite file in the project folder "
            "(.keel/store.db). 'postgresql://user@host/db' for a team server.",
        ),
        Setting(
            "KEEL_PROJECT",
            str,
            "",
            "Project folder. Empty: the current folder or the nearest parent holding keel.yaml.",
        ),
        Setting(
            "KEEL_BLOBS",
            str,
            "",
            "Blob store: a folder, file:///PATH or s3://BUCKET/PREFIX (endpoint, region and "
            "keys from AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY). "
            "Empty: .keel/blobs in the project folder.",
        ),
        Setting("KEEL_USER", str, "", "Who is acting, recorded in audit trails. Empty: $USER."),
        Setting(
            "KEEL_BUSY_TIMEOUT_MS",
            int,
            60_000,
            "How long a SQLite writer waits for the lock before giving up.",
        ),
        Setting(
            "KEEL_STORE_RETRY_SECONDS",
            int,
            30,
            "How long a PostgreSQL store keeps retrying, with backoff, when its connection is "
            "lost (server restarted or unreachable): opening a transaction, and the whole of a "
            "tracking write (params, metrics). 0: fail at once.",
        ),
        Setting(
            "KEEL_EXECUTOR", str, "process", "Default executor for search trials: process or ray."
        ),
        Setting("KEEL_WORKERS", int, 0, "Worker processes for local executors. 0: one per core."),
        Setting(
            "KEEL_MAX_STRING_BYTES",
            int,
            64 * 1024,
            "Longest string value (UTF-8 bytes) the model server takes in a request; a longer "
            "one is answered 422 naming its row and field, and nothing of it is logged.",
        ),
    ]
}


def get(name: str) -> object:
    """The value of setting ``name`` from the environment, parsed, or its default."""
    setting = SETTINGS[name]
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return setting.default
    if setting.type is int:
        try:
            return int(raw)
        except ValueError:
            raise InvalidInput(
                f"environment variable {name}: expected an integer, got {raw!r}"
            ) from None
    return raw


def get_int(name: str) -> int:
    """The value of integer setting ``name`` (:func:`get`, typed for the caller)."""
    if SETTINGS[name].type is not int:
        raise TypeError(f"setting {name} is a {SETTINGS[name].type.__name__}, not an int")
    value = get(name)
    assert isinstance(value, int)
    return value


def user() -> str:
    """The acting user for audit trails."""
    configured = get("KEEL_USER")
    if configured:
        return str(configured)
    import getpass

    try:
        return getpass.getuser()  # $LOGNAME, $USER, … then the account of the process
    except (KeyError, OSError):
        return f"uid-{os.getuid()}"
