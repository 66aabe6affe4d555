"""Storage URLs of the record, and opening the Optuna storage where a study lives.

The runners write a study into such a storage and analysis reads it back; both spell its URL
through this module, so that a URL written by one opens in the other:

- :class:`StorageURL` is a URL parsed once (SQLAlchemy's ``make_url`` for a database, the
  ``journal:`` prefix for Optuna's journal file): its back end, its file, its public form;
- :func:`check_storage_url` validates a URL's form without connecting;
- :func:`normalize_storage_url` names the PostgreSQL driver that is installed and makes a
  journal's path absolute;
- :func:`journal_path` is the file of a journal storage (``journal:PATH``) and
  :func:`check_journal_writable` checks, creating nothing, that a driver can write it;
- :func:`public_url` is a URL without its password, the only form that is written down;
  :func:`connect_url` puts the password back from :data:`PASSWORD_ENV` to connect;
- :func:`redact` hides a URL's password for printing;
- :func:`open_storage` opens the storage: for a driver that writes it (``readonly=False``,
  the runners), or for a reader that cannot (``readonly=True``, analysis).

A database's password is never stored with a study: ``settings.json`` and the study's
``settings`` attribute hold :func:`public_url`. To connect again the driver (and analysis)
takes the password from the URL given on the command line, else from :data:`PASSWORD_ENV`,
else leaves it to the database client (libpq reads ``PGPASSWORD`` and ``~/.pgpass`` itself).
"""

from __future__ import annotations

import importlib.util
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from study.validate import ConfigError

if TYPE_CHECKING:
    import optuna
    from sqlalchemy.engine import URL

__all__ = [
    "STORAGE_SCHEMES", "JOURNAL_PREFIX", "PASSWORD_ENV", "StorageURL", "check_storage_url", "normalize_storage_url",
    "journal_path", "check_journal_writable", "is_storage_url", "public_url", "connect_url", "redact", "open_storage",
]

#: the databases a study may live in (SQLAlchemy back-end names)
DATABASES = ("sqlite", "postgresql", "mysql")
#: the back ends a study may live in: databases, and Optuna's journal file (``journal:PATH``)
STORAGE_SCHEMES = (*DATABASES, "journal")
#: a journal storage's URL is this prefix and the file's path: ``journal:/shared/studies.log``
JOURNAL_PREFIX = "journal:"
#: the environment variable a database password is taken from when the URL has none
PASSWORD_ENV = "STUDY_STORAGE_PASSWORD"
#: the tables every Optuna RDB storage holds (a database without them holds no study)
_OPTUNA_TABLES = frozenset({"studies", "trials", "version_info"})


@dataclass(frozen=True)
class StorageURL:
    """A storage URL, parsed once: build it with :meth:`parse`.

    ``text`` is the URL as given; ``backend`` is ``"journal"`` or SQLAlchemy's back-end name
    (``"sqlite"``, ``"postgresql"``, ...; whether it is supported is
    :func:`check_storage_url`'s to say); ``driver`` the full driver name
    (``"postgresql+psycopg2"``; ``"journal"`` for a journal); ``journal`` a journal's file as
    written; ``database`` a database's name (SQLite: its file), None when it names none.
    """

    text: str
    backend: str
    driver: str
    journal: str | None = None
    database: str | None = None
    sqlalchemy_url: URL | None = field(default=None, repr=False, compare=False)

    @classmethod
    def parse(cls, text: str) -> StorageURL:
        """Parse ``text``: a ValueError (``storage: malformed URL ...``) when it is no URL."""
        if not isinstance(text, str):
            raise ConfigError("storage", f"malformed URL {text!r}")
        if text.startswith(JOURNAL_PREFIX):
            return cls(text=text, backend="journal", driver="journal", journal=text[len(JOURNAL_PREFIX):])
        from sqlalchemy.engine import make_url

        try:
            parsed = make_url(text)
        except Exception as exc:  # sqlalchemy's ArgumentError, a ValueError for a bad port, ...
            raise ConfigError("storage", f"malformed URL {text!r} ({exc})") from None  # no password to hide: it did not parse
        return cls(text=text, backend=parsed.get_backend_name(), driver=parsed.drivername, database=parsed.database,
                   sqlalchemy_url=parsed)

    @classmethod
    def maybe(cls, text: Any) -> StorageURL | None:
        """:meth:`parse`, or None where ``text`` is no URL."""
        try:
            return cls.parse(text)
        except ValueError:
            return None

    @property
    def is_journal(self) -> bool:
        """Whether this is Optuna's journal file (``journal:PATH``)."""
        return self.journal is not None

    @property
    def is_sqlite(self) -> bool:
        """Whether this is an SQLite database."""
        return self.backend == "sqlite"

    @property
    def password(self) -> str | None:
        """The database password the URL carries (None: none, or a journal)."""
        return self.sqlalchemy_url.password if self.sqlalchemy_url is not None else None

    @property
    def public(self) -> str:
        """The URL without its password (not masked: the result is a valid URL that connects
        with the password from elsewhere). The form a storage URL is written down in."""
        url = self.sqlalchemy_url
        if url is None or url.password is None:
            return self.text
        from sqlalchemy.engine import URL

        bare = URL.create(url.drivername, username=url.username, host=url.host, port=url.port,
                          database=url.database, query=url.query)
        return bare.render_as_string(hide_password=False)

    @property
    def redacted(self) -> str:
        """The URL with its password shown as ``***``, for printing."""
        if self.sqlalchemy_url is None:
            return self.text
        return self.sqlalchemy_url.render_as_string(hide_password=True)

    def connect(self, password: str | None = None) -> str:
        """The URL to connect with: one without a password gets ``password``, else the one in
        :data:`PASSWORD_ENV` (when set); otherwise the URL as it is."""
        url = self.sqlalchemy_url
        if url is None or url.password is not None or self.is_sqlite:
            return self.text
        secret = password if password is not None else os.environ.get(PASSWORD_ENV)
        if not secret:
            return self.text
        return url.set(password=secret).render_as_string(hide_password=False)

    def with_driver(self, driver: str) -> str:
        """The URL as given, its driver name replaced by ``driver`` (the rest of the text kept
        exactly as written: SQLAlchemy's rendering would re-order and re-quote the query)."""
        if self.sqlalchemy_url is None:
            raise ConfigError("storage", f"a journal URL has no database driver ({self.text})")
        return driver + self.text[self.text.index("://"):]

    def normalized(self) -> str:
        """:func:`normalize_storage_url` of this URL."""
        if self.is_journal:
            return JOURNAL_PREFIX + os.path.abspath(self.journal) if self.journal else self.text
        if self.driver.lower() in ("postgresql", "postgres"):
            if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
                return self.with_driver("postgresql+psycopg2")
        return self.text


def is_storage_url(text: str) -> bool:
    """Whether ``text`` is a storage URL (not a run folder's path)."""
    return "://" in text or text.startswith(JOURNAL_PREFIX)


def journal_path(url: str) -> str | None:
    """The file of a journal storage URL ``journal:PATH``; None for a database URL."""
    if isinstance(url, str) and url.startswith(JOURNAL_PREFIX):
        return StorageURL.parse(url).journal
    return None


def _check_journal_url(url: str) -> str:
    path = journal_path(url) or ""
    if not path:
        raise ConfigError("storage", f"{url!r} names no journal file (journal:/shared/studies.log)")
    if path.startswith("//"):
        raise ConfigError("storage", f"malformed journal URL {url!r}: a journal is journal:PATH, e.g. journal:/shared/studies.log "
                         f"or journal:runs/studies.log")
    if path.endswith(("/", os.sep)) or path.rsplit("/", 1)[-1] in (".", ".."):
        raise ConfigError("storage", f"{url!r} names a folder, not a journal file (journal:/shared/studies.log)")
    if "\x00" in path:
        raise ConfigError("storage", f"malformed journal URL {url!r}")
    return url


def check_storage_url(url: str) -> str:
    """Validate a storage URL's form (no connection); a ValueError names the problem."""
    if not isinstance(url, str) or not url:
        raise ConfigError("storage", f"expected a database URL like sqlite:///path/study.db or postgresql://user@host/db, "
                         f"or a journal file journal:PATH, got {url!r}")
    parsed = StorageURL.parse(url)
    if parsed.is_journal:
        return _check_journal_url(url)
    scheme = parsed.backend
    if scheme not in DATABASES:
        raise ConfigError("storage", f"unsupported database {scheme!r} in {redact(url)!r} (use {', '.join(STORAGE_SCHEMES)})")
    if scheme == "sqlite" and not parsed.database:
        raise ConfigError("storage", f"{url!r} names no database file (sqlite:///path/study.db)")
    if scheme != "sqlite" and not parsed.sqlalchemy_url.host:
        raise ConfigError("storage", f"{redact(url)!r} names no host ({scheme}://user@host:port/database)")
    return url


def check_journal_writable(url: str) -> None:
    """For a journal URL: its folder exists and a driver may write the journal and its lock
    file there (``PATH.lock``); creates nothing. Nothing to check for a database URL."""
    path = journal_path(url)
    if path is None:
        return
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.exists(folder):
        raise ConfigError("storage", f"the journal's folder {folder} does not exist (create it, or give another journal:PATH)")
    if not os.path.isdir(folder):
        raise ConfigError("storage", f"the journal's folder {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError("storage", f"cannot write to the journal's folder {folder} (the journal needs a lock file beside it)")
    if os.path.exists(path):
        if not os.path.isfile(path):
            raise ConfigError("storage", f"the journal {path} is not a file")
        if not os.access(path, os.R_OK | os.W_OK):
            raise ConfigError("storage", f"cannot write to the journal {path}")


def normalize_storage_url(url: str) -> str:
    """``postgresql://...`` with the PostgreSQL driver that is installed; ``journal:PATH``
    with an absolute path.

    SQLAlchemy 2.1 maps a bare ``postgresql://`` (or ``postgres://``) to psycopg 3; where only
    psycopg2 (this project's dependency, ``psycopg2-binary``) is installed the URL names it
    explicitly, so the stored URL opens anywhere the project is installed. A journal's path
    is made absolute so the stored URL opens from any folder. Other URLs (and text that is
    no URL) are returned as they are."""
    parsed = StorageURL.maybe(url)
    return parsed.normalized() if parsed is not None else url


def public_url(url: str) -> str:
    """``url`` with its password removed (:attr:`StorageURL.public`); text that is no URL
    is returned as it is."""
    parsed = StorageURL.maybe(url)
    return parsed.public if parsed is not None else url


def connect_url(url: str, password: str | None = None) -> str:
    """``url`` to connect with (:meth:`StorageURL.connect`): a URL without a password gets
    ``password``, else the one in :data:`PASSWORD_ENV` (when set); otherwise the URL as it
    is (the database client may still find one: libpq reads ``PGPASSWORD`` and ``~/.pgpass``)."""
    parsed = StorageURL.maybe(url)
    return parsed.connect(password) if parsed is not None else url


def redact(url: str) -> str:
    """``url`` with its password shown as ``***``, for printing."""
    parsed = StorageURL.maybe(url)
    return parsed.redacted if parsed is not None else url


# --------------------------------------------------------------------------------------
# opening a storage


def open_storage(url: str, *, readonly: bool = False) -> optuna.storages.BaseStorage:
    """The Optuna storage at ``url``.

    ``readonly=False`` (the runners' driver): an RDB storage (its schema created when new),
    or Optuna's journal file for ``journal:PATH`` (created when absent). SQLite gets a busy
    timeout so two studies (two drivers) can share one file, PostgreSQL a pre-ping so a
    cluster driver survives idle drops. A journal takes Optuna's NFS-safe lock
    (``JournalFileOpenLock``, a ``PATH.lock`` file created with ``O_EXCL``), so drivers on
    several machines may share it on a shared filesystem.

    ``readonly=True`` (analysis): a storage that cannot be written to. SQLite files are
    opened in SQLite's read-only URI mode, PostgreSQL sessions with
    ``default_transaction_read_only``, other databases without table creation, a journal
    through a backend that only reads it (no lock file, never created); a missing file and a
    database that holds no Optuna tables are refused before Optuna could initialise them.

    Either way a URL without a password connects with the one in :data:`PASSWORD_ENV`
    (:func:`connect_url`). Problems are one-line ValueErrors (FileNotFoundError for a
    missing file when reading)."""
    if readonly:
        return _open_readonly(url)
    return _open_writable(url)


def _open_writable(url: str) -> optuna.storages.BaseStorage:
    import optuna

    parsed = StorageURL.parse(check_storage_url(url))
    if parsed.is_journal:
        return _journal_writable(url)
    url = connect_url(normalize_storage_url(url))
    if parsed.is_sqlite:
        kwargs: dict[str, Any] = {"connect_args": {"timeout": 60}}
    else:
        kwargs = {"pool_pre_ping": True}
    # Two drivers opening a fresh database at once race to create Optuna's schema (one of
    # them fails on alembic_version); the schema exists on the next attempt.
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
        except ImportError as exc:
            raise ConfigError("storage", f"no database driver for {redact(url)} ({exc.__cause__ or exc})") from None
        except Exception as exc:  # sqlalchemy's OperationalError etc.: one line, named
            if attempt < 4 and ("alembic_version" in str(exc) or "already exists" in str(exc)):
                time.sleep(0.2 * (attempt + 1))
                continue
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if "password" in first.lower() and public_url(url) == url:  # the password is not written down: say where it goes
                first += f" (a password is never stored: give the URL with it again, or set {PASSWORD_ENV}, PGPASSWORD or ~/.pgpass)"
            raise ConfigError("storage", f"cannot open {redact(url)}: {first}") from None
    raise AssertionError("unreachable")


def _journal_writable(url: str) -> optuna.storages.JournalStorage:
    """Optuna's journal file at ``journal:PATH`` (created when absent) with the open lock."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    check_journal_writable(url)
    path = journal_path(normalize_storage_url(url))
    try:
        return optuna.storages.JournalStorage(JournalFileBackend(path, lock_obj=JournalFileOpenLock(path)))
    except (OSError, ValueError) as exc:  # unreadable, or not a journal (a line that is no JSON log)
        raise ConfigError("storage", f"cannot open the journal {path}: {exc}") from None


def _journal_readonly(url: str) -> optuna.storages.JournalStorage:
    """The journal at ``journal:PATH``, read-only; the file must exist (it is not created)."""
    import optuna

    from study._optuna_compat import ReadOnlyJournal

    path = journal_path(normalize_storage_url(check_storage_url(url)))
    if not Path(path).is_file():
        raise FileNotFoundError(f"storage: no journal file at {path} ({url})")
    try:
        return optuna.storages.JournalStorage(ReadOnlyJournal(path))
    except (OSError, ValueError) as exc:
        raise ConfigError("storage", f"cannot read the journal {path}: {exc}") from None


def _readonly_url(url: str) -> str:
    """The URL to read a database with: SQLite's becomes a read-only URI (the file must
    exist, else SQLite would create it), a server's gets its password (:func:`connect_url`)."""
    parsed = StorageURL.maybe(url)
    if parsed is None:
        raise ConfigError("storage", f"expected a database URL such as sqlite:///runs/NAME/study.db, got {url!r}")
    if parsed.is_sqlite:
        path = parsed.database or ""
        if path.startswith("file:"):
            return url  # already a URI, taken as given
        if not path or path == ":memory:":
            raise ConfigError("storage", f"an in-memory SQLite database holds no study ({url})")
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"storage: no SQLite file at {p} ({url})")
        return f"sqlite:///file:{p.resolve()}?mode=ro&uri=true"
    if parsed.backend not in ("postgresql", "postgres", "mysql"):
        raise ConfigError("storage", f"unsupported URL scheme {parsed.driver.lower()!r} in {redact(url)!r} "
                         f"(expected sqlite, postgresql, mysql or journal:PATH)")
    return connect_url(normalize_storage_url(url))


def _open_readonly(url: str) -> optuna.storages.BaseStorage:
    import optuna
    import sqlalchemy

    if journal_path(url) is not None:
        return _journal_readonly(url)
    ro = _readonly_url(url)
    kwargs: dict[str, Any] = {}
    if StorageURL.parse(ro).backend in ("postgresql", "postgres"):
        # PostgreSQL: every transaction of this connection is read-only
        kwargs["connect_args"] = {"options": "-c default_transaction_read_only=on"}
    try:
        engine = sqlalchemy.create_engine(ro, **kwargs)
        with engine.connect() as conn:
            tables = set(sqlalchemy.inspect(conn).get_table_names())
        engine.dispose()
    except sqlalchemy.exc.ArgumentError as exc:
        raise ConfigError("storage", f"bad URL {redact(url)!r} ({exc})") from None
    except sqlalchemy.exc.SQLAlchemyError as exc:
        msg = " ".join(str(getattr(exc, "orig", exc) or exc).split())
        raise ConfigError("storage", f"cannot open {redact(url)!r}: {msg}") from None
    except ImportError as exc:
        raise ConfigError("storage", f"no database driver for {redact(url)!r} ({exc})") from None
    if not _OPTUNA_TABLES <= tables:
        raise ConfigError("storage", f"{redact(url)!r} holds no Optuna study")
    return optuna.storages.RDBStorage(ro, engine_kwargs=kwargs, skip_table_creation=True, skip_compatibility_check=True)
