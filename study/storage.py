"""Storage URLs of the record: the Optuna storage where a study lives.

The runners write a study into such a storage and analysis reads it back; both spell its URL
through these helpers, so that a URL written by one opens in the other:

- :func:`check_storage_url` validates a URL's form without connecting;
- :func:`normalize_storage_url` names the PostgreSQL driver that is installed and makes a
  journal's path absolute;
- :func:`journal_path` is the file of a journal storage (``journal:PATH``) and
  :func:`check_journal_writable` checks, creating nothing, that a driver can write it;
- :func:`public_url` is a URL without its password, the only form that is written down;
  :func:`connect_url` puts the password back from :data:`PASSWORD_ENV` to connect;
- :func:`redact` hides a URL's password for printing.

A database's password is never stored with a study: ``settings.json`` and the study's
``settings`` attribute hold :func:`public_url`. To connect again the driver (and analysis)
takes the password from the URL given on the command line, else from :data:`PASSWORD_ENV`,
else leaves it to the database client (libpq reads ``PGPASSWORD`` and ``~/.pgpass`` itself).
"""

from __future__ import annotations

import importlib.util
import os

__all__ = [
    "STORAGE_SCHEMES", "JOURNAL_PREFIX", "PASSWORD_ENV", "check_storage_url", "normalize_storage_url", "journal_path",
    "check_journal_writable", "is_storage_url", "public_url", "connect_url", "redact",
]

#: the databases a study may live in (SQLAlchemy back-end names)
DATABASES = ("sqlite", "postgresql", "mysql")
#: the back ends a study may live in: databases, and Optuna's journal file (``journal:PATH``)
STORAGE_SCHEMES = (*DATABASES, "journal")
#: a journal storage's URL is this prefix and the file's path: ``journal:/shared/studies.log``
JOURNAL_PREFIX = "journal:"
#: the environment variable a database password is taken from when the URL has none
PASSWORD_ENV = "STUDY_STORAGE_PASSWORD"


def is_storage_url(text: str) -> bool:
    """Whether ``text`` is a storage URL (not a run folder's path)."""
    return "://" in text or text.startswith(JOURNAL_PREFIX)


def journal_path(url: str) -> str | None:
    """The file of a journal storage URL ``journal:PATH``; None for a database URL."""
    if isinstance(url, str) and url.startswith(JOURNAL_PREFIX):
        return url[len(JOURNAL_PREFIX):]
    return None


def _check_journal_url(url: str) -> str:
    path = journal_path(url) or ""
    if not path:
        raise ValueError(f"storage: {url!r} names no journal file (journal:/shared/studies.log)")
    if path.startswith("//"):
        raise ValueError(f"storage: malformed journal URL {url!r}: a journal is journal:PATH, e.g. journal:/shared/studies.log "
                         f"or journal:runs/studies.log")
    if path.endswith(("/", os.sep)) or path.rsplit("/", 1)[-1] in (".", ".."):
        raise ValueError(f"storage: {url!r} names a folder, not a journal file (journal:/shared/studies.log)")
    if "\x00" in path:
        raise ValueError(f"storage: malformed journal URL {url!r}")
    return url


def check_storage_url(url: str) -> str:
    """Validate a storage URL's form (no connection); a ValueError names the problem."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    if not isinstance(url, str) or not url:
        raise ValueError(f"storage: expected a database URL like sqlite:///path/study.db or postgresql://user@host/db, "
                         f"or a journal file journal:PATH, got {url!r}")
    if url.startswith(JOURNAL_PREFIX):
        return _check_journal_url(url)
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise ValueError(f"storage: malformed URL {redact(url)!r} ({exc})") from None
    scheme = parsed.get_backend_name()
    if scheme not in DATABASES:
        raise ValueError(f"storage: unsupported database {scheme!r} in {redact(url)!r} (use {', '.join(STORAGE_SCHEMES)})")
    if scheme == "sqlite" and not parsed.database:
        raise ValueError(f"storage: {url!r} names no database file (sqlite:///path/study.db)")
    if scheme != "sqlite" and not parsed.host:
        raise ValueError(f"storage: {redact(url)!r} names no host ({scheme}://user@host:port/database)")
    return url


def check_journal_writable(url: str) -> None:
    """For a journal URL: its folder exists and a driver may write the journal and its lock
    file there (``PATH.lock``); creates nothing. Nothing to check for a database URL."""
    path = journal_path(url)
    if path is None:
        return
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.exists(folder):
        raise ValueError(f"storage: the journal's folder {folder} does not exist (create it, or give another journal:PATH)")
    if not os.path.isdir(folder):
        raise ValueError(f"storage: the journal's folder {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"storage: cannot write to the journal's folder {folder} (the journal needs a lock file beside it)")
    if os.path.exists(path):
        if not os.path.isfile(path):
            raise ValueError(f"storage: the journal {path} is not a file")
        if not os.access(path, os.R_OK | os.W_OK):
            raise ValueError(f"storage: cannot write to the journal {path}")


def normalize_storage_url(url: str) -> str:
    """``postgresql://...`` with the PostgreSQL driver that is installed; ``journal:PATH``
    with an absolute path.

    SQLAlchemy 2.1 maps a bare ``postgresql://`` (or ``postgres://``) to psycopg 3; where only
    psycopg2 (this project's dependency, ``psycopg2-binary``) is installed the URL names it
    explicitly, so the stored URL opens anywhere the project is installed. A journal's path
    is made absolute so the stored URL opens from any folder. Other URLs are returned as
    they are."""
    path = journal_path(url)
    if path:
        return JOURNAL_PREFIX + os.path.abspath(path)
    scheme, sep, rest = url.partition("://")
    if sep and scheme.lower() in ("postgresql", "postgres"):
        if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
            return "postgresql+psycopg2://" + rest
    return url


def _parsed(url: str):
    """The SQLAlchemy URL of a database URL; None for a journal or an unparsable URL."""
    if not isinstance(url, str) or journal_path(url) is not None:
        return None
    try:
        from sqlalchemy.engine import make_url

        return make_url(url)
    except Exception:
        return None


def public_url(url: str) -> str:
    """``url`` with its password removed (not masked: the result is a valid URL that connects
    with the password from elsewhere). The form a storage URL is written down in."""
    parsed = _parsed(url)
    if parsed is None or parsed.password is None:
        return url
    from sqlalchemy.engine import URL

    bare = URL.create(parsed.drivername, username=parsed.username, host=parsed.host, port=parsed.port,
                      database=parsed.database, query=parsed.query)
    return bare.render_as_string(hide_password=False)


def connect_url(url: str, password: str | None = None) -> str:
    """``url`` to connect with: a URL without a password gets ``password``, else the one in
    :data:`PASSWORD_ENV` (when set); otherwise the URL as it is (the database client may
    still find one: libpq reads ``PGPASSWORD`` and ``~/.pgpass``)."""
    parsed = _parsed(url)
    if parsed is None or parsed.password is not None or parsed.get_backend_name() == "sqlite":
        return url
    secret = password if password is not None else os.environ.get(PASSWORD_ENV)
    if not secret:
        return url
    return parsed.set(password=secret).render_as_string(hide_password=False)


def redact(url: str) -> str:
    """``url`` with its password shown as ``***``, for printing."""
    parsed = _parsed(url)
    if parsed is None:
        return url
    return parsed.render_as_string(hide_password=True)
