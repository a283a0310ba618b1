#!/usr/bin/env python3
"""A Baton worker in another language: an HTTP server on inherited sockets.

It speaks the protocol any socket-activated server does (systemd's, which Baton uses):
  - listening sockets arrive at fd 3, 4, ... (LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID);
  - READY=1 goes to NOTIFY_SOCKET once it accepts;
  - SIGTERM means drain: finish what is in flight, answer each connection's next request with
    `Connection: close`, close a keep-alive connection only once it has been quiet (since its last
    response) for IDLE_GRACE and twice its client's longest pause, with nothing waiting to be read,
    then exit. The listeners' queues are left to the next generation (this worker does not read
    BATON_CONTROL_FD, so after a port change what is queued on the old port is reset).

Run it under a master:  baton run --listen :8080 -- python3 Examples/python-worker/app.py
"""
import json
import os
import select
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = os.environ.get("BATON_VERSION") or "py"
IDLE_GRACE = 1.0       # seconds a keep-alive connection must be quiet before a drain closes it
DRAIN_DEADLINE = 25.0  # seconds before the last connections are cut

draining = threading.Event()
open_connections = [0]
connections_lock = threading.Lock()


def inherited_sockets():
    """The listeners passed as systemd does (sd_listen_fds)."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        sys.exit("app.py: no sockets passed to this process (LISTEN_PID does not name it); run it under 'baton run'")
    count = int(os.environ.get("LISTEN_FDS", "0"))
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    sockets = [socket.socket(fileno=3 + index) for index in range(count)]
    for sock in sockets:
        # Shared with other generations: a wake-up may find the connection taken by another
        # process, and a blocking accept() would then hang the accept loop (and the drain).
        sock.setblocking(False)
    return sockets


def notify(message):
    """sd_notify(3): one datagram to NOTIFY_SOCKET ('@' = abstract namespace)."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    address = "\0" + path[1:] if path.startswith("@") else path
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(message.encode(), address)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path != "/hello":
            return self.answer(404, {"error": "not found"})
        self.answer(200, {"message": "Hello from Python", "ver": VERSION, "pid": os.getpid()})

    def answer(self, status, payload):
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        # close_connection is already set for `Connection: close` and HTTP/1.0 without keep-alive.
        if draining.is_set() or self.close_connection:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def setup(self):
        with connections_lock:
            open_connections[0] += 1
        super().setup()

    def finish(self):
        try:
            super().finish()
        finally:
            with connections_lock:
                open_connections[0] -= 1

    def handle(self):
        """Keep-alive loop that notices a drain while waiting for the next request."""
        self.close_connection = True
        self.handle_one_request()
        longest_pause = 0.0
        while not self.close_connection:
            quiet_since = time.monotonic()
            # select() also sees a request that waits unread in the kernel: never close on one.
            while not select.select([self.connection], [], [], 0.05)[0]:
                quiet = time.monotonic() - quiet_since
                if draining.is_set() and quiet > max(IDLE_GRACE, 2 * longest_pause):
                    return  # quiet for longer than this client ever paused: close
            longest_pause = max(longest_pause, time.monotonic() - quiet_since)
            self.handle_one_request()

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return  # the client went away: nothing to report
        super().handle_error(request, client_address)


def serve(sock):
    server = Server(sock.getsockname()[:2] if sock.family != socket.AF_UNIX else ("", 0), Handler,
                                 bind_and_activate=False)
    server.socket.close()
    server.socket = sock
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return server


def main():
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the master's upgrade signal, not ours
    servers = [serve(sock) for sock in inherited_sockets()]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    notify(f"READY=1\nSTATUS=serving version {VERSION}")
    # With a timeout: a signal that lands on another thread runs its handler in the main thread
    # only when the main thread wakes up.
    while not stop.wait(0.25):
        pass

    draining.set()
    notify("STOPPING=1")
    deadline = time.monotonic() + DRAIN_DEADLINE
    # Stop accepting (the kernel queue stays with the next generation); bounded by the deadline.
    stopper = threading.Thread(target=lambda: [server.shutdown() for server in servers], daemon=True)
    stopper.start()
    stopper.join(DRAIN_DEADLINE)
    while time.monotonic() < deadline:
        with connections_lock:
            if open_connections[0] == 0:
                break
        time.sleep(0.02)


if __name__ == "__main__":
    main()
