"""A real HTTP server on 127.0.0.1 (ephemeral port) for the download tests, with scriptable misbehaviour.

Each path is a :class:`Route` that can: omit Content-Length, ignore Range, fail with 5xx a few times, drop the
connection after some bytes, stall, throttle, or act as a forward proxy target. Every request is recorded.
"""

import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Optional
from urllib.parse import urlsplit


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    send_length: bool = True
    ranges: bool = True
    fail_first: int = 0
    fail_status: int = 500
    drop_after: Optional[int] = None
    drop_times: int = 1
    stall_after: Optional[int] = None
    chunk: int = 8192
    delay: float = 0.0
    requests: List[Dict[str, object]] = field(default_factory=list)

    @property
    def gets(self) -> int:
        return len(self.requests)


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        route = self.server.routes.get(path)
        if route is None:
            self.send_error(404, "no such file")
            return
        with self.server.lock:
            route.requests.append(
                {"range": self.headers.get("Range"), "proxied": self.path.startswith("http"), "time": time.time()}
            )
            failing = route.fail_first > 0
            if failing:
                route.fail_first -= 1
            dropping = route.drop_after is not None and route.drop_times > 0
            if dropping:
                route.drop_times -= 1
        if failing:
            self.send_error(route.fail_status, "server trouble")
            return
        if route.status != 200:
            self.send_error(route.status)
            return
        body, start = route.body, 0
        requested = self.headers.get("Range")
        if route.ranges and requested and requested.startswith("bytes="):
            start = int(requested[6:].split("-", 1)[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        if route.ranges:
            self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        if route.send_length:
            self.send_header("Content-Length", str(len(body) - start))
        self.send_header("Connection", "close")
        self.end_headers()
        self._send(route, body[start:], dropping)

    def _send(self, route: Route, data: bytes, dropping: bool) -> None:
        sent = 0
        try:
            while sent < len(data):
                if dropping and route.drop_after is not None and sent >= route.drop_after:
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if route.stall_after is not None and sent >= route.stall_after:
                    self.wfile.flush()
                    self.server.stopping.wait(30)
                    return
                n = route.chunk
                if dropping and route.drop_after is not None:
                    n = min(n, route.drop_after - sent)
                if route.stall_after is not None:
                    n = min(n, route.stall_after - sent)
                self.wfile.write(data[sent : sent + n])
                sent += n
                if route.delay:
                    time.sleep(route.delay)
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass  # the client went away (cancel, timeout)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    routes: Dict[str, Route]


class ModelServer:
    """Context manager: ``with ModelServer() as srv: srv.add("/m.zip", body=b"..."); srv.url("/m.zip")``."""

    def __init__(self, certfile: Optional[str] = None, keyfile: Optional[str] = None) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self.scheme = "http"
        if certfile:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(certfile, keyfile)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            self.scheme = "https"
        self._server.routes = {}
        self._server.lock = threading.Lock()
        self._server.stopping = threading.Event()
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.running = False

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def url(self, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def add(self, path: str, **kwargs) -> Route:
        route = Route(**kwargs)
        self._server.routes[path] = route
        return route

    def start(self) -> "ModelServer":
        self._thread.start()
        self.running = True
        return self

    def stop(self) -> None:
        if self.running:
            self._server.stopping.set()
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5)
            self.running = False

    def __enter__(self) -> "ModelServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def closed_port() -> int:
    """A local port with nothing listening (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
