"""--publish against a real Mosquitto broker that each test starts on 127.0.0.1 (Debian's `mosquitto`,
installed by .ci/run): records arrive in order, a restarted broker loses nothing at QoS 1, the loop never
waits for a broker that is away, a refused login is one line and exit code 2, TLS."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from edgevision.camera.publish import Broker, MqttSink
from edgevision.deploy.errors import UserError
from test_cli import EDGEVISION, HEADLESS, assert_one_line_error

mqtt = pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is not installed (the 'mqtt' or 'dev' extra)")
MOSQUITTO = shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if Path(p).is_file()), None)
pytestmark = pytest.mark.skipif(MOSQUITTO is None,
                                reason="no mosquitto binary (apt-get install mosquitto; .ci/run does)")
TOPIC = "edgevision/test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mosquitto:
    """A broker on 127.0.0.1 that keeps its sessions on disk, so a restart loses no queued message."""

    def __init__(self, folder: Path, users: dict[str, str] | None = None, tls: bool = False) -> None:
        self.folder, self.port, self.proc = folder, free_port(), None
        folder.mkdir(parents=True, exist_ok=True)
        lines = [f"listener {self.port} 127.0.0.1", "persistence true", f"persistence_location {folder}/",
                 "max_queued_messages 100000", f"log_dest file {folder}/mosquitto.log",
                 f"allow_anonymous {'false' if users else 'true'}"]
        if os.geteuid() == 0:
            lines.append("user root")  # else it drops to the user 'mosquitto', who cannot read this folder
        if users:
            passwords = folder / "passwords"
            passwords.write_text("".join(f"{u}:{p}\n" for u, p in users.items()))
            passwords.chmod(0o600)
            subprocess.run(["mosquitto_passwd", "-U", str(passwords)], check=True, capture_output=True)
            lines.append(f"password_file {passwords}")
        if tls:
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                            "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout",
                            str(folder / "key.pem"), "-out", str(folder / "cert.pem")], check=True, capture_output=True)
            lines += [f"certfile {folder}/cert.pem", f"keyfile {folder}/key.pem"]
        (folder / "mosquitto.conf").write_text("\n".join(lines) + "\n")
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.folder / "mosquitto.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError as exc:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"mosquitto did not start: {self.proc.stderr.read().decode()}") from exc
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not listen within 10 s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: it saves its sessions and queued messages first
            self.proc.wait(timeout=10)

    def url(self, user: str | None = None, scheme: str = "mqtt") -> str:
        return f"{scheme}://{user + '@' if user else ''}127.0.0.1:{self.port}/{TOPIC}"


class Subscriber:
    """A QoS 1 subscriber with a persistent session: what was published while it was away still comes."""

    def __init__(self, broker: Mosquitto) -> None:
        self.frames: list[int] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-sub-{broker.port}",
                                  clean_session=False)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(TOPIC, qos=1)
        self.client.on_message = self._message
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        time.sleep(0.3)  # subscribed

    def _message(self, client, userdata, message) -> None:
        with self.lock:
            self.frames.append(json.loads(message.payload)["frame"])

    def wait_for(self, n: int, timeout: float = 20.0) -> list[int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(set(self.frames)) >= n:
                    break
            time.sleep(0.05)
        with self.lock:
            return list(self.frames)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def broker(tmp_path):
    b = Mosquitto(tmp_path / "broker")
    yield b
    b.stop()


def first_seen(frames: list[int]) -> list[int]:
    """The frames in the order they first arrived (QoS 1 is at least once: a resent record may repeat)."""
    seen: dict[int, None] = {}
    for f in frames:
        seen.setdefault(f, None)
    return list(seen)


def test_records_arrive_in_order(broker):
    said: list[str] = []
    subscriber = Subscriber(broker)
    sink = MqttSink(Broker.parse(broker.url()), said.append)
    for i in range(300):
        assert sink.write(None, {"frame": i, "result": {"task": "detect", "detections": []}})
    sink.close()
    assert first_seen(subscriber.wait_for(300)) == list(range(300))
    subscriber.close()
    assert sink.delivered == 300 and sink.dropped == 0
    assert said[0].startswith("publishing to mqtt://127.0.0.1:") and said[-1].startswith("300 records delivered")


def test_a_broker_restarted_mid_run_loses_nothing_and_the_loop_never_waits(broker):
    said: list[str] = []
    subscriber = Subscriber(broker)
    sink = MqttSink(Broker.parse(broker.url()), said.append, flush_s=20)
    for i in range(100):
        sink.write(None, {"frame": i})
    time.sleep(0.5)
    broker.stop()
    slowest = 0.0
    for i in range(100, 400):  # the broker is away: each write still returns at once
        t0 = time.perf_counter()
        sink.write(None, {"frame": i})
        slowest = max(slowest, time.perf_counter() - t0)
        time.sleep(0.002)
    assert slowest < 0.05, f"a write waited {slowest * 1e3:.1f} ms while the broker was down"
    broker.start()
    sink.close()  # waits (up to 20 s) for the broker to take what waited
    frames = first_seen(subscriber.wait_for(400))
    subscriber.close()
    assert sink.delivered == 400 and sink.dropped == sink.failed == 0, said
    assert frames == list(range(400))
    assert any("lost the broker" in line for line in said) and any("answers" in line for line in said)


def test_a_broker_that_never_answers_is_counted_not_waited_for():
    said: list[str] = []
    url = f"mqtt://127.0.0.1:{free_port()}/{TOPIC}"  # nobody listens there
    sink = MqttSink(Broker.parse(url), said.append, max_waiting=100, flush_s=0.5)
    t0 = time.perf_counter()
    for i in range(1000):
        sink.write(None, {"frame": i})
    assert time.perf_counter() - t0 < 1.0
    sink.close()
    assert sink.delivered == 0 and sink.dropped > 0
    assert said[0].startswith("the broker at") and "does not answer yet" in said[0]
    assert said[-1].startswith("0 records delivered") and "; 1000 not delivered" in said[-1]
    assert "dropped from the full queue" in said[-1] and "the broker never answered" in said[-1]


def test_publish_every_sends_the_latest_record_at_that_rate(broker):
    subscriber = Subscriber(broker)
    sink = MqttSink(Broker.parse(broker.url()), lambda line: None, every=0.2)
    t0 = time.monotonic()
    i = 0
    while time.monotonic() - t0 < 1.0:
        sink.write(None, {"frame": i})
        i += 1
        time.sleep(0.01)
    sink.close()
    frames = subscriber.wait_for(6, timeout=5)
    subscriber.close()
    assert 5 <= len(frames) <= 8 and frames[0] == 0 and frames[-1] == i - 1  # the last one goes at the end
    assert frames == sorted(frames)


def test_tls_with_the_brokers_certificate(tmp_path):
    broker = Mosquitto(tmp_path / "tls", tls=True)
    try:
        said: list[str] = []
        sink = MqttSink(Broker.parse(broker.url(scheme="mqtts")), said.append, ca=tmp_path / "tls" / "cert.pem")
        for i in range(10):
            sink.write(None, {"frame": i})
        sink.close()
        assert sink.delivered == 10, said
    finally:
        broker.stop()


def run_cli(tiny_model, video, url: str, *extra: str, password: str | None = None):
    env = dict(HEADLESS)
    env.pop("EDGEVISION_MQTT_PASSWORD", None)
    if password is not None:
        env["EDGEVISION_MQTT_PASSWORD"] = password
    return subprocess.run([*EDGEVISION, "run", "--model", str(tiny_model("detect")), "--source", str(video),
                           "--no-display", "--track", "--count-line", "0,48,128,48", "--publish", url, *extra],
                          capture_output=True, text=True, env=env, timeout=120)


def test_run_publishes_with_a_login_and_a_refused_login_is_one_line(tiny_model, synthetic_video, tmp_path):
    broker = Mosquitto(tmp_path / "auth", users={"camera1": "right-secret"})
    try:
        video = synthetic_video(20)
        proc = run_cli(tiny_model, video, broker.url("camera1"), "--jsonl", str(tmp_path / "a.jsonl"),
                       password="wrong-secret")
        assert_one_line_error(proc, "refused the login", "EDGEVISION_MQTT_PASSWORD")
        assert "wrong-secret" not in proc.stderr + proc.stdout
        assert not (tmp_path / "a.jsonl").exists()  # refused before any output file was made
        proc = run_cli(tiny_model, video, broker.url("camera1"), password="right-secret")
        assert proc.returncode == 0, proc.stderr
        assert "20 records delivered to mqtt://camera1@127.0.0.1:" in proc.stderr and "secret" not in proc.stderr
    finally:
        broker.stop()


def test_run_goes_on_without_a_broker_and_says_what_was_not_delivered(tiny_model, synthetic_video):
    proc = run_cli(tiny_model, synthetic_video(30), f"mqtt://127.0.0.1:{free_port()}/{TOPIC}")
    assert proc.returncode == 0, proc.stderr
    assert "30 frames in" in proc.stderr and "0 records delivered" in proc.stderr
    assert "30 not delivered" in proc.stderr


@pytest.mark.parametrize(("url", "fragment"), [
    ("mqtt://user:hunter2@127.0.0.1/t", "EDGEVISION_MQTT_PASSWORD, not in the URL"),
    ("http://127.0.0.1/t", "mqtt://[user@]host[:port]/topic"),
    ("mqtt://127.0.0.1/", "give a host and a topic"),
    ("mqtt://127.0.0.1/a/#", "no wildcards"),
    ("mqtt://127.0.0.1:99999/t", "the port must be a number"),
])
def test_bad_publish_urls_are_one_clear_line(url, fragment):
    with pytest.raises(UserError, match=fragment.replace("[", r"\[").replace("]", r"\]")) as caught:
        Broker.parse(url)
    assert "hunter2" not in str(caught.value)
