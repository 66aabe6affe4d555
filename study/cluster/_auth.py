"""Ray's token authentication, handled on purpose.

Since Ray 2.52 a cluster can require a token from everyone who talks to it (``RAY_AUTH_MODE=token``);
Ray 2.59 turned it on for the local cluster ``ray.init()`` starts, printing a warning on every
start, and Ray's docs announce it for every cluster from 2.61. Ray reads, in this order
(``python/ray/_private/authentication/`` and the C++ ``AuthenticationTokenLoader`` of Ray 2.60):
the mode from ``RAY_AUTH_MODE`` (``token`` or ``disabled``), the token from ``RAY_AUTH_TOKEN``,
else from the file named by ``RAY_AUTH_TOKEN_PATH``, else from ``~/.ray/auth_token``
(``ray get-auth-token`` prints it; ``--generate`` writes a new one there).

What the harness does:

- **A local Ray it starts** (a study without ``--address``, ``study.train --workers``, the test
  suite's cluster) runs with a token made for it (:func:`local_cluster_auth`): unless the user
  set ``RAY_AUTH_MODE``, this process gets ``RAY_AUTH_MODE=token`` and, unless the user gave a
  token (``RAY_AUTH_TOKEN`` or ``RAY_AUTH_TOKEN_PATH``), a fresh random ``RAY_AUTH_TOKEN``; the
  Ray processes it starts inherit both. Nothing is written to disk (Ray's default would write
  ``~/.ray/auth_token``, readable by whoever reads the home folder), no other user or process of
  the machine can reach the cluster's processes, and Ray has nothing to warn about. A
  loopback-only cluster with authentication off was the other choice, and is weaker: loopback
  keeps other machines out, not the other users of a shared machine. The two variables stay
  in this process's environment: a later local Ray of the process takes the same token, and
  a cluster of the harness's own is reached by its address with it (the test suite's is).
- **A cluster at ``--address HOST:PORT``** is asked once for its id, as ``ray.init`` would ask
  (:func:`check_cluster_token`, milliseconds), before ``ray.init``, which would retry a refused
  token for about 20 s with a warning a second: a refusal is one line that says which token
  was sent (or that none was) and where the cluster's token comes from. ``auto`` is left to
  Ray, which takes the token of a local cluster it finds from the same sources.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from study.validate import ConfigError

__all__ = ["AUTH_MODE_ENV", "TOKEN_ENV", "TOKEN_PATH_ENV", "default_token_path", "token_source", "local_cluster_auth",
           "check_cluster_token", "captured_stderr"]

AUTH_MODE_ENV = "RAY_AUTH_MODE"
TOKEN_ENV = "RAY_AUTH_TOKEN"
TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"
#: the token this process made for a local cluster (None: none made)
_MADE: str | None = None
#: where a cluster's token comes from, as the error lines say it
_SOURCES = f"{TOKEN_ENV}, a file named by {TOKEN_PATH_ENV}, or ~/.ray/auth_token (`ray get-auth-token` on the head node prints it)"


def default_token_path() -> Path:
    """``~/.ray/auth_token``, where Ray looks last for a token."""
    return Path.home() / ".ray" / "auth_token"


def token_source(*, field: str | None = "address") -> tuple[str | None, str]:
    """The token Ray would send and where it comes from, in Ray's order: ``RAY_AUTH_TOKEN``,
    the file ``RAY_AUTH_TOKEN_PATH`` names, ``~/.ray/auth_token``; ``(None, "no token")``
    when none. A ``RAY_AUTH_TOKEN_PATH`` that cannot be read is a :class:`ConfigError` of
    ``field`` (Ray's C++ side aborts the process on it)."""
    token = os.environ.get(TOKEN_ENV, "").strip()
    if token:
        return token, TOKEN_ENV if token != _MADE else "the token made for this process's local Ray"
    named = os.environ.get(TOKEN_PATH_ENV)
    if named:
        try:
            token = Path(named).expanduser().read_text().strip()
        except OSError as exc:
            raise ConfigError(field, f"{TOKEN_PATH_ENV}={named}: cannot read the token file ({exc.strerror or exc})") from None
        if not token:
            raise ConfigError(field, f"{TOKEN_PATH_ENV}={named}: the token file is empty")
        return token, f"the file {named} ({TOKEN_PATH_ENV})"
    path = default_token_path()
    try:
        token = path.read_text().strip()
    except OSError:
        token = ""
    return (token, str(path)) if token else (None, "no token")


def _refresh_ray_config() -> None:
    """Make this process's Ray see the environment as it is now: Ray caches its config (the
    auth mode) and the token on first read (what Ray's own ``_enable_token_auth`` does)."""
    try:
        from ray._raylet import AuthenticationTokenLoader, Config

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()
    except Exception:
        pass


def local_cluster_auth() -> str:
    """Before this process starts a local Ray: token authentication with a token made for it,
    unless the user chose (``RAY_AUTH_MODE`` set; a token of theirs is used as given). Returns
    what was done, in words."""
    global _MADE
    if os.environ.get(AUTH_MODE_ENV, "token") == "token":
        token_source(field=None)  # a RAY_AUTH_TOKEN_PATH that cannot be read is one line, not Ray's abort
    if AUTH_MODE_ENV in os.environ:
        return f"{AUTH_MODE_ENV}={os.environ[AUTH_MODE_ENV]} as set"
    os.environ[AUTH_MODE_ENV] = "token"
    if os.environ.get(TOKEN_ENV) or os.environ.get(TOKEN_PATH_ENV):
        said = "the token in " + (TOKEN_ENV if os.environ.get(TOKEN_ENV) else TOKEN_PATH_ENV)
    else:
        _MADE = secrets.token_hex(32)
        os.environ[TOKEN_ENV] = _MADE
        said = "a token made for it"
    _refresh_ray_config()
    return f"token authentication with {said}"


@contextlib.contextmanager
def captured_stderr() -> Iterator[list[str]]:
    """The process's standard error (file descriptor 2: Ray's C++ side writes there, not to
    ``sys.stderr``) captured into a list of one string, available after the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    out: list[str] = []
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield out
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            out.append(tmp.read().decode(errors="replace"))


def _refused(address: str) -> str:
    mode = os.environ.get(AUTH_MODE_ENV)
    if mode != "token":
        state = f"{AUTH_MODE_ENV} is {mode!r}" if mode else f"{AUTH_MODE_ENV} is not set"
        return (f"the Ray cluster at {address!r} requires a token (Ray's token authentication) and none was sent ({state} here): "
                f"set {AUTH_MODE_ENV}=token and give the cluster's token in {_SOURCES}")
    token, where = token_source()
    return (f"the Ray cluster at {address!r} refused the token from {where}: it is not that cluster's token; "
            f"give the cluster's token in {_SOURCES}")


def check_cluster_token(address: str, *, verbose: bool = False) -> None:
    """Ask the cluster at ``HOST:PORT`` for its id once, as ``ray.init`` would, with the token
    Ray would send; :class:`ConfigError` (field ``address``) in one line when the cluster
    refuses it. Any other answer is left to ``ray.init``. Ray's own log lines of the attempt
    are shown only with ``verbose``."""
    try:
        from ray._raylet import GcsClient
        from ray.exceptions import AuthenticationError
    except ImportError:  # another Ray: ray.init says what it says
        return
    if os.environ.get(AUTH_MODE_ENV) == "token" and token_source()[0] is None:  # (Ray's C++ side aborts the process on it)
        raise ConfigError("address", f"{AUTH_MODE_ENV}=token here but there is no token to send to the Ray cluster at "
                                     f"{address!r}: give the cluster's token in {_SOURCES}")
    _refresh_ray_config()
    refused = False
    with captured_stderr() as said:
        try:
            GcsClient(address=address, cluster_id=None)
        except AuthenticationError:
            refused = True
        except Exception:
            pass
    if verbose and said and said[0]:
        sys.stderr.write(said[0])
    if refused:
        raise ConfigError("address", _refused(address))
