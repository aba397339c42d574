"""``gluon-triplet view``: never a URL to another server; a warning for non-loopback hosts."""

import http.server
import signal
import socket
import subprocess
import sys
import threading

import pytest

from gluon_triplet.cli import main
from gluon_triplet.cli import view as view_cli


def error_lines(text):
    return [line for line in text.splitlines() if line.startswith("error:")]


@pytest.fixture
def taken_port():
    """A port with a listener on every interface, as another server would hold it."""
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        s.listen(1)
        yield s.getsockname()[1]


def test_port_taken_is_one_error_line_and_no_url(tmp_path, taken_port, capsys):
    assert view_cli.port_in_use("127.0.0.1", taken_port)
    assert main(["view", str(tmp_path), "--port", str(taken_port)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert error_lines(err) == [
        f"error: port {taken_port} on 127.0.0.1 is in use by another server; choose another "
        "--port, or --port 0 for a free one"
    ]


def test_non_loopback_host_warns_that_it_serves_every_network(tmp_path, taken_port, capsys):
    # The taken port stops the command right after the warning: no server is started.
    assert main(["view", str(tmp_path), "--host", "0.0.0.0", "--port", str(taken_port)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[0] == (
        "WARNING: --host 0.0.0.0 serves TensorBoard, and the logs it reads, to every network "
        "that reaches this machine; --host 127.0.0.1 keeps it local"
    )
    assert len(error_lines(err)) == 1


def test_loopback_hosts_do_not_warn(tmp_path, taken_port, capsys):
    assert main(["view", str(tmp_path), "--port", str(taken_port)]) == 2
    assert "WARNING" not in capsys.readouterr().err


@pytest.mark.parametrize(
    "host, loopback",
    [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("localhost", True)]
    + [("0.0.0.0", False), ("::", False), ("", False), ("10.1.2.3", False)],
)
def test_is_loopback(host, loopback):
    assert view_cli.is_loopback(host) is loopback


class _Other(http.server.BaseHTTPRequestHandler):
    """Another web server: answers every request with 200 and a page."""

    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"<html>someone else's server</html>")

    def log_message(self, *args):
        pass


def test_a_server_that_is_not_ours_never_gets_its_url_printed(tmp_path, monkeypatch, capsys):
    """Past the up-front check (a port taken between the check and TensorBoard's bind): the
    URL answers, but not with our TensorBoard, and TensorBoard exits: an error, no URL."""
    other = http.server.HTTPServer(("127.0.0.1", 0), _Other)
    thread = threading.Thread(target=other.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setattr(view_cli, "port_in_use", lambda host, port: False)
    try:
        port = other.server_address[1]
        code = main(["view", str(tmp_path), "--port", str(port), "--timeout", "120"])
    finally:
        other.shutdown()
        other.server_close()
    out, err = capsys.readouterr()
    assert code == 2
    assert "TensorBoard:" not in out
    (line,) = error_lines(err)
    assert line.startswith("error: tensorboard ") and "another server answers there" in line


def test_ctrl_c_stops_view_with_a_plain_line_and_status_0(tmp_path):
    """Ctrl-C is view's documented way to stop: a real SIGINT once the URL is printed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "gluon_triplet", "view", str(tmp_path), "--timeout", "300"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = proc.stdout.readline()
        assert first.startswith("TensorBoard: http://127.0.0.1:"), first
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert out == "stopped TensorBoard (Ctrl-C)\n"
    assert error_lines(err) == [] and "Traceback" not in err
