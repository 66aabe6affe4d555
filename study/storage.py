"""Storage URLs of the record: the Optuna storage where a study lives.

The runners write a study into such a storage and analysis reads it back; both spell its URL
through these helpers, so that a URL written by one opens in the other:

- :func:`check_storage_url` validates a URL's form without connecting;
- :func:`normalize_storage_url` names the PostgreSQL driver that is installed;
- :func:`redact` hides a URL's password for printing.
"""

from __future__ import annotations

import importlib.util

__all__ = ["STORAGE_SCHEMES", "check_storage_url", "normalize_storage_url", "redact"]

#: the database back ends a study may live in
STORAGE_SCHEMES = ("sqlite", "postgresql", "mysql")


def check_storage_url(url: str) -> str:
    """Validate a storage URL's form (no connection); a ValueError names the problem."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    if not isinstance(url, str) or not url:
        raise ValueError(f"storage: expected a database URL like sqlite:///path/study.db or postgresql://user@host/db, got {url!r}")
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise ValueError(f"storage: malformed URL {url!r} ({exc})") from None
    scheme = parsed.get_backend_name()
    if scheme not in STORAGE_SCHEMES:
        raise ValueError(f"storage: unsupported database {scheme!r} in {url!r} (use {', '.join(STORAGE_SCHEMES)})")
    if scheme == "sqlite" and not parsed.database:
        raise ValueError(f"storage: {url!r} names no database file (sqlite:///path/study.db)")
    if scheme != "sqlite" and not parsed.host:
        raise ValueError(f"storage: {url!r} names no host ({scheme}://user@host:port/database)")
    return url


def normalize_storage_url(url: str) -> str:
    """``postgresql://...`` with the PostgreSQL driver that is installed.

    SQLAlchemy 2.1 maps a bare ``postgresql://`` (or ``postgres://``) to psycopg 3; where only
    psycopg2 (this project's dependency, ``psycopg2-binary``) is installed the URL names it
    explicitly, so the stored URL opens anywhere the project is installed. Other URLs are
    returned as they are."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme.lower() in ("postgresql", "postgres"):
        if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
            return "postgresql+psycopg2://" + rest
    return url


def redact(url: str) -> str:
    """``url`` without its password."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url
