"""Redis clients from URLs, for the sync and the asyncio shells.

``redis://[user:password@]host:port/db`` and ``rediss://`` (TLS) URLs are understood by redis-py itself;
this module adds freemem's defaults (binary replies, bounded timeouts and retries, so a Redis that is down
surfaces as :class:`~freemem.core.errors.StoreConnectionError` within about a second instead of hanging), builds
cluster clients on request, and describes a client without its password for error messages.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio
import redis.asyncio.cluster
from redis.backoff import ExponentialWithJitterBackoff

from freemem.core.errors import ConfigError

__all__ = ["async_client", "describe", "describe_url", "ensure_binary", "sync_client"]

DEFAULT_SOCKET_TIMEOUT = 5.0
DEFAULT_CONNECT_TIMEOUT = 2.0
DEFAULT_RETRIES = 3


def _options(kwargs: dict[str, Any], *, asyncio: bool, cluster: bool) -> dict[str, Any]:
    if kwargs.get("decode_responses"):
        raise ConfigError("freemem stores bytes: decode_responses must stay False")
    options = dict(kwargs)
    options["decode_responses"] = False
    options.setdefault("socket_timeout", DEFAULT_SOCKET_TIMEOUT)
    options.setdefault("socket_connect_timeout", DEFAULT_CONNECT_TIMEOUT)
    if "retry" not in options:
        if asyncio:
            from redis.asyncio.retry import Retry as AsyncRetry

            retry: Any = AsyncRetry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), DEFAULT_RETRIES)
        else:
            from redis.retry import Retry

            retry = Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), DEFAULT_RETRIES)
        options["retry"] = retry
    return options


def _check_url(url: str) -> None:
    """A :class:`ConfigError` naming what is wrong with ``url``, before redis-py raises a ``ValueError``."""
    if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"a Redis URL must start with redis://, rediss:// or unix://, got {url!r}")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"invalid Redis URL {_safe(url)!r}: {exc}") from None
    if parts.scheme != "unix" and not parts.hostname and port is None and parts.netloc.rpartition("@")[2]:
        raise ConfigError(f"invalid Redis URL {_safe(url)!r}: no host name")


def _safe(url: str) -> str:
    try:
        return describe_url(url)
    except ValueError:
        return url.split("@")[-1]


def _from_url(factory: Any, url: str, options: dict[str, Any]) -> Any:
    _check_url(url)
    try:
        return factory(url, **options)
    except ValueError as exc:  # redis-py's URL parsing ("Port could not be cast to integer value ...")
        raise ConfigError(f"invalid Redis URL {_safe(url)!r}: {exc}") from None


def sync_client(url: str, *, cluster: bool = False, **kwargs: Any) -> redis.Redis | redis.RedisCluster:
    """A ``redis.Redis`` (or ``redis.RedisCluster`` with ``cluster=True``) for ``url``.

    Raises :class:`ConfigError` for a URL that cannot be parsed (``redis://:::``)."""
    options = _options(kwargs, asyncio=False, cluster=cluster)
    if cluster:
        return _from_url(redis.RedisCluster.from_url, url, options)
    return _from_url(redis.Redis.from_url, url, options)


def async_client(
    url: str, *, cluster: bool = False, **kwargs: Any
) -> redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster:
    """A ``redis.asyncio.Redis`` (or its cluster twin with ``cluster=True``) for ``url``."""
    options = _options(kwargs, asyncio=True, cluster=cluster)
    if cluster:
        return _from_url(redis.asyncio.cluster.RedisCluster.from_url, url, options)
    return _from_url(redis.asyncio.Redis.from_url, url, options)


def describe_url(url: str) -> str:
    """``url`` without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError:
        port = None
    if port:
        host = f"{host}:{port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


def _connection_kwargs(client: Any) -> dict[str, Any]:
    pool = getattr(client, "connection_pool", None)
    if pool is not None:
        return dict(getattr(pool, "connection_kwargs", {}) or {})
    nodes = getattr(client, "get_nodes", None)
    if nodes is not None:
        for node in nodes():
            inner = getattr(node, "redis_connection", None)
            if inner is not None and getattr(inner, "connection_pool", None) is not None:
                return dict(inner.connection_pool.connection_kwargs)
            kwargs = getattr(node, "connection_kwargs", None)
            if kwargs:
                return dict(kwargs)
    return {}


def describe(client: Any) -> str:
    """A short, password-free description of a client's server(s), for error messages."""
    nodes = getattr(client, "get_nodes", None)
    if nodes is not None and getattr(client, "connection_pool", None) is None:
        try:
            names = sorted(f"{n.host}:{n.port}" for n in nodes())
        except Exception:  # noqa: BLE001 - describing must never fail
            names = []
        return "cluster " + ",".join(names[:3]) + ("..." if len(names) > 3 else "") if names else "cluster"
    kwargs = _connection_kwargs(client)
    if "path" in kwargs:
        return f"unix:{kwargs['path']}"
    scheme = "rediss" if kwargs.get("connection_class", None) and "SSL" in kwargs["connection_class"].__name__ else "redis"
    return f"{scheme}://{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"


def ensure_binary(client: Any) -> None:
    """Refuse a client that decodes replies to ``str``: stored values are binary."""
    encoder = getattr(client, "encoder", None) or getattr(client, "get_encoder", lambda: None)()
    decode = getattr(encoder, "decode_responses", None)
    if decode is None:
        decode = _connection_kwargs(client).get("decode_responses", False)
    if decode:
        raise ConfigError("freemem needs a Redis client with decode_responses=False (values are binary)")
