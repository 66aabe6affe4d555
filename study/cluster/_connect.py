"""Connecting this process to Ray: a reachable cluster or a local Ray started for the run."""

from __future__ import annotations

import logging
import os
import socket

from study.cluster._auth import check_cluster_token, local_cluster_auth
from study.validate import ConfigError

__all__ = ["check_reachable", "init_ray"]


def check_reachable(address: str, timeout: float = 10.0) -> None:
    """A ``HOST:PORT`` address must accept a TCP connection: ``ray.init`` retries an
    unreachable one for minutes before it fails. ``auto``, ``ray://...`` and other forms are
    left to Ray. ValueError (naming ``address``) when nothing answers."""
    host, sep, port = address.rpartition(":")
    if not sep or "://" in address or not port.isdigit():
        return  # 'auto', ray://..., or a form Ray itself will judge
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ConfigError("address", f"cannot connect to the Ray cluster at {address!r} ({exc.strerror or exc})") from None


def init_ray(address: str | None = None, *, verbose: bool = False) -> bool:
    """Connect to the Ray cluster at ``address`` (checked first: :func:`check_reachable`, and
    for ``HOST:PORT`` whether it takes this process's token, :func:`~study.cluster.check_cluster_token`),
    or start a local Ray with every CPU of this machine when ``address`` is None, with a token
    made for it (:func:`~study.cluster.local_cluster_auth`); nothing when this process is
    connected already. Ray says only its errors unless ``verbose`` (its start-up lines, its
    warnings, the workers' output). Returns True when this call connected (the caller may
    ``ray.shutdown()``; Ray also disconnects when the process exits). A cluster that cannot
    be reached, or that refuses this process's token, is a :class:`ConfigError` naming
    ``address`` in one line."""
    import ray

    if ray.is_initialized():
        return False
    kwargs = {"include_dashboard": False, "log_to_driver": verbose, "logging_level": logging.INFO if verbose else logging.ERROR,
              "configure_logging": True}
    try:
        if address:
            check_reachable(address)
            check_cluster_token(address, verbose=verbose)
            ray.init(address=address, **kwargs)
        else:  # "local": a new Ray, not one that /tmp/ray/ray_current_cluster names (someone else's)
            local_cluster_auth()
            ray.init(address="local", num_cpus=os.cpu_count() or 1, **kwargs)
    except ConnectionError as exc:
        raise ConfigError("address", f"cannot connect to the Ray cluster at {address!r} ({exc})") from None
    except Exception as exc:
        from ray.exceptions import AuthenticationError

        if not isinstance(exc, AuthenticationError):
            raise
        where = f"the Ray cluster at {address!r}" if address else "a local Ray"
        raise ConfigError("address", f"{where}: {' '.join(str(exc).split())}") from None
    return True
