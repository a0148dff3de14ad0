"""A total deadline for one HTTP request, headers and body included.

httpx's timeouts bound each network operation: a server that sends a byte every few seconds,
of its headers or its body, holds a request for as long as it likes. Here every socket
operation of the client's connections gets at most the time left before the request's
deadline, and none may start after it.
"""

from __future__ import annotations

import ssl
import threading
import time
import typing
from collections.abc import Iterator
from contextlib import contextmanager

import httpcore
import httpx
from httpcore._backends.base import SOCKET_OPTION  # the type of NetworkBackend's own signature


class RequestDeadline:
    """The deadline of the request the current thread is making, if any."""

    def __init__(self) -> None:
        self._local = threading.local()

    @contextmanager
    def within(self, seconds: float) -> Iterator[None]:
        self._local.until = time.monotonic() + seconds
        self._local.seconds = seconds
        try:
            yield
        finally:
            self._local.until = None

    def expired_message(self) -> str:
        seconds = getattr(self._local, "seconds", 0.0)
        return f"the response took longer than {seconds:g}s in all (CINNOX_TIMEOUT_SECONDS)"

    def expired(self) -> bool:
        until: float | None = getattr(self._local, "until", None)
        return until is not None and time.monotonic() >= until

    def cut(self, timeout: float | None, error: type[Exception]) -> float | None:
        """`timeout`, shortened to what is left of the deadline; raises `error` when none is."""
        until: float | None = getattr(self._local, "until", None)
        if until is None:
            return timeout
        left = until - time.monotonic()
        if left <= 0:
            raise error(self.expired_message())
        return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, deadline: RequestDeadline) -> None:
        self._inner = inner
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            return self._inner.read(max_bytes, self._deadline.cut(timeout, httpcore.ReadTimeout))
        except httpcore.ReadTimeout:
            if self._deadline.expired():
                raise httpcore.ReadTimeout(self._deadline.expired_message()) from None
            raise

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._deadline.cut(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(
            ssl_context, server_hostname, self._deadline.cut(timeout, httpcore.ConnectTimeout)
        )
        return _DeadlineStream(inner, self._deadline)

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend, deadline: RequestDeadline) -> None:
        self._inner = inner
        self._deadline = deadline

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        timeout = self._deadline.cut(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(
            self._inner.connect_tcp(host, port, timeout, local_address, socket_options), self._deadline
        )

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: typing.Iterable[SOCKET_OPTION] | None = None
    ) -> httpcore.NetworkStream:
        timeout = self._deadline.cut(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.connect_unix_socket(path, timeout, socket_options), self._deadline)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def transport_with_deadline(verify: ssl.SSLContext | bool, deadline: RequestDeadline) -> httpx.HTTPTransport:
    """httpx's own transport, its connections bounded by `deadline`.

    httpx 0.28 takes no network backend, so the pool's is wrapped in place (pinned versions;
    tests/pipelines/test_hostile.py drips headers and body to hold it to this).
    """
    transport = httpx.HTTPTransport(verify=verify)
    pool = transport._pool
    assert isinstance(pool, httpcore.ConnectionPool)
    pool._network_backend = _DeadlineBackend(pool._network_backend, deadline)
    return transport
