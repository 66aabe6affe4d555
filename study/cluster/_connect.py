"""Connecting this process to Ray: a reachable cluster or a local Ray started for the run."""

from __future__ import annotations

import logging
import os
import socket

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


def init_ray(address: str | None = None) -> bool:
    """Connect to the Ray cluster at ``address`` (checked with :func:`check_reachable`
    first), or start a local Ray with every CPU of this machine when ``address`` is None;
    nothing when this process is connected already. Returns True when this call connected
    (the caller may ``ray.shutdown()``; Ray also disconnects when the process exits)."""
    import ray

    if ray.is_initialized():
        return False
    kwargs = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING, "configure_logging": True}
    try:
        if address:
            check_reachable(address)
            ray.init(address=address, **kwargs)
        else:  # "local": a new Ray, not one that /tmp/ray/ray_current_cluster names (someone else's)
            ray.init(address="local", num_cpus=os.cpu_count() or 1, **kwargs)
    except ConnectionError as exc:
        raise ConfigError("address", f"cannot connect to the Ray cluster at {address!r} ({exc})") from None
    return True
