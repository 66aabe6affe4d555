"""study.storage: URL forms (journal:PATH among them), the password-free form that is written
down, the password put back to connect, and the journal's folder checked without creating."""

from __future__ import annotations

import os

import pytest

from study.storage import (
    PASSWORD_ENV,
    check_journal_writable,
    check_storage_url,
    connect_url,
    is_storage_url,
    journal_path,
    normalize_storage_url,
    public_url,
    redact,
)

URL = "postgresql+psycopg2://bob:s%40cret@db.example:5432/studies?sslmode=require"


def test_the_written_form_has_no_password_and_is_still_a_url():
    assert public_url(URL) == "postgresql+psycopg2://bob@db.example:5432/studies?sslmode=require"
    assert check_storage_url(public_url(URL))
    assert redact(URL) == "postgresql+psycopg2://bob:***@db.example:5432/studies?sslmode=require"
    for url in ("sqlite:///runs/x/study.db", "postgresql://bob@db/x", "journal:/shared/s.log"):
        assert public_url(url) == url


def test_the_password_comes_back_from_the_url_given_or_the_environment(monkeypatch):
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    bare = public_url(URL)
    assert connect_url(bare) == bare  # nothing to add: libpq may still find PGPASSWORD or ~/.pgpass
    assert connect_url(bare, "s@cret") == URL
    monkeypatch.setenv(PASSWORD_ENV, "s@cret")
    assert connect_url(bare) == URL
    assert connect_url(URL.replace("s%40cret", "other")) == URL.replace("s%40cret", "other")  # a given password wins
    assert connect_url("sqlite:///x.db") == "sqlite:///x.db" and connect_url("journal:/x.log") == "journal:/x.log"


def test_journal_urls(tmp_path):
    assert journal_path("journal:/shared/s.log") == "/shared/s.log" and journal_path("sqlite:///x.db") is None
    assert is_storage_url("journal:s.log") and is_storage_url("sqlite:///x.db") and not is_storage_url("runs/x")
    assert check_storage_url("journal:runs/s.log") == "journal:runs/s.log"
    assert normalize_storage_url("journal:s.log") == "journal:" + os.path.abspath("s.log")
    for bad, match in (("journal:", "names no journal file"), ("journal://host/s.log", "malformed journal URL"),
                       ("journal:/shared/", "names a folder"), ("redis://h/0", "unsupported database")):
        with pytest.raises(ValueError, match=match) as info:
            check_storage_url(bad)
        assert str(info.value).startswith("storage: ")


def test_a_journal_folder_is_checked_and_nothing_is_created(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    check_journal_writable(f"journal:{tmp_path / 's.log'}")
    for url, match in ((f"journal:{tmp_path / 'missing' / 's.log'}", "does not exist"),
                       (f"journal:{a_file / 's.log'}", "is not a folder"),
                       (f"journal:{tmp_path}", "is not a file")):
        with pytest.raises(ValueError, match=match):
            check_journal_writable(url)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]
