"""Each frame's record to an MQTT broker (``--publish mqtt://[user@]host[:port]/topic``): one device per
door or shelf reporting to one place, the way Home Assistant, Node-RED and Frigate listen.

The loop never waits for the network: ``write`` puts the record's JSON on a bounded queue and returns; a
thread hands it to the Eclipse Paho client at QoS 1, whose own thread keeps the connection, resends what
the broker has not acknowledged, and reconnects with a growing delay (0.5 s to 30 s) while the broker
is away. When the queue is full the oldest record waiting is dropped and counted; at the end the sink
says how many records the broker acknowledged and how many it did not get. A broker that refuses the
login is one line and exit code 2. The password comes from $EDGEVISION_MQTT_PASSWORD, never the URL.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from ..deploy.errors import UserError
from ..deploy.results import json_line

PASSWORD_ENV = "EDGEVISION_MQTT_PASSWORD"
PORTS = {"mqtt": 1883, "mqtts": 8883}
MAX_WAITING = 10_000  # records the sink holds while the broker is away (about 1 KB each)
PAHO_QUEUE = 200  # records handed to Paho and not yet acknowledged; the rest wait in the sink's queue
RECONNECT_S = (0.5, 30.0)  # the first and the longest delay between reconnection attempts
_REFUSED = {4, 5, 134, 135}  # CONNACK: bad user name or password / not authorised (MQTT 3.1.1 and 5)


@dataclass(frozen=True)
class Broker:
    scheme: str
    host: str
    port: int
    topic: str
    user: str | None = None

    @classmethod
    def parse(cls, url: str) -> Broker:
        parts = urlsplit(url)
        if parts.scheme not in PORTS:
            given = f"a {parts.scheme}:// address" if parts.scheme else "no scheme"
            raise UserError(f"--publish takes mqtt://[user@]host[:port]/topic or mqtts://...; got {given}")
        if parts.password is not None:  # said without the URL: it holds the password
            raise UserError(f"--publish: put the password in ${PASSWORD_ENV}, not in the URL (a command line is "
                            "visible to every user of the machine)")
        try:
            port = parts.port or PORTS[parts.scheme]
        except ValueError:
            raise UserError(f"--publish {url}: the port must be a number from 1 to 65535") from None
        topic = parts.path.lstrip("/")
        if not parts.hostname or not topic:
            raise UserError(f"--publish {url}: give a host and a topic, e.g. mqtt://broker.local/edgevision/door1")
        if "+" in topic or "#" in url or "?" in url:
            raise UserError(f"--publish {url}: a topic to publish to has no wildcards (+, #), '?' or '#'")
        return cls(parts.scheme, parts.hostname, port, topic, parts.username)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{self.user + '@' if self.user else ''}{host}:{self.port}/{self.topic}"


class MqttSink:
    """A live-loop sink that publishes each record (or the latest every ``every`` seconds) to ``broker``."""

    def __init__(self, broker: Broker, say, every: float | None = None, ca: Path | None = None,
                 password: str | None = None, max_waiting: int = MAX_WAITING, connect_wait_s: float = 5.0,
                 flush_s: float = 5.0) -> None:
        try:
            import paho.mqtt.client as mqtt
        except ImportError as exc:
            raise UserError("--publish needs the Paho MQTT client: pip install 'edgevision[mqtt]' "
                            "(or pip install paho-mqtt)") from exc
        if every is not None and not every > 0:
            raise UserError(f"--publish-every must be a number of seconds above 0, got {every}")
        if ca is not None and not ca.is_file():
            raise UserError(f"--publish-ca: no such file: {ca}")
        self.broker, self.say, self.every, self.flush_s = broker, say, every, flush_s
        self.path = None  # no file to name at the end
        self.dropped = self.failed = self.published = self.delivered = 0
        self._waiting: queue.Queue = queue.Queue(maxsize=max_waiting)
        self._latest: str | None = None
        self._due = 0.0
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._answered = threading.Event()  # the first connection attempt has an outcome
        self._stop = threading.Event()
        self._refused: str | None = None
        self._ever_connected = False
        self._lost_said = False
        self._mqtt = mqtt
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311,
                             client_id=f"edgevision-{socket.gethostname()}-{os.getpid()}")
        if broker.user:
            client.username_pw_set(broker.user, password)
        if broker.scheme == "mqtts":
            client.tls_set(ca_certs=str(ca) if ca else None)
        client.reconnect_delay_set(*RECONNECT_S)
        client.max_queued_messages_set(PAHO_QUEUE)
        client.on_connect, client.on_connect_fail = self._on_connect, self._on_connect_fail
        client.on_disconnect, client.on_publish = self._on_disconnect, self._on_publish
        self._client = client
        client.connect_async(broker.host, broker.port, keepalive=30)
        client.loop_start()
        self._answered.wait(connect_wait_s)
        if self._refused:
            self._shut()
            raise UserError(self._refused)
        if self._connected.is_set():
            say(f"publishing to {broker.url} (QoS 1{', every ' + format(every, 'g') + ' s' if every else ''})")
        else:
            self._lost_said = True
            say(f"the broker at {broker.url} does not answer yet: records wait (up to {max_waiting}) and are sent "
                "when it does")
        self._worker = threading.Thread(target=self._work, name="edgevision-mqtt", daemon=True)
        self._worker.start()

    # Paho's thread
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            if int(reason_code.value) in _REFUSED:
                self._refused = (f"the broker at {self.broker.url} refused the login ({reason_code}): check the user "
                                 f"name and ${PASSWORD_ENV}")
                client.disconnect()  # no retrying with a login the broker refuses
            self._answered.set()
            return
        self._connected.set()
        self._ever_connected = True
        self._answered.set()
        if self._lost_said:
            self._lost_said = False
            self.say(f"the broker at {self.broker.url} answers: sending what waited")

    def _on_connect_fail(self, client, userdata) -> None:
        self._answered.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connected.clear()
        if not self._stop.is_set() and not self._refused and not self._lost_said:
            self._lost_said = True
            self.say(f"lost the broker at {self.broker.url} ({reason_code}): reconnecting; records wait")

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._lock:
            self.delivered += 1

    # the sink's thread: from the queue to Paho, in order
    def _work(self) -> None:
        mqtt = self._mqtt
        while not self._stop.is_set():
            try:
                payload = self._waiting.get(timeout=0.1)
            except queue.Empty:
                continue
            while not self._stop.is_set():
                info = self._client.publish(self.broker.topic, payload, qos=1)
                if info.rc != mqtt.MQTT_ERR_QUEUE_SIZE:  # Paho holds as many as it may: wait for the broker
                    break
                self._stop.wait(0.05)
            else:  # stopped while Paho was full: not delivered
                with self._lock:
                    self.failed += 1
                return
            with self._lock:
                if info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):  # NO_CONN: Paho sends it on reconnecting
                    self.published += 1
                else:
                    self.failed += 1

    # the live loop's thread
    def write(self, image: np.ndarray, record: dict) -> bool:
        if self._refused:
            raise UserError(self._refused)
        payload = json_line(record, compact=True).rstrip("\n")
        if self.every is not None:
            self._latest = payload
            now = time.monotonic()
            if now < self._due:
                return True
            self._due, self._latest = now + self.every, None
        self._put(payload)
        return True

    def _put(self, payload: str) -> None:
        try:
            self._waiting.put_nowait(payload)
        except queue.Full:  # the broker has been away long: the oldest record goes
            try:
                self._waiting.get_nowait()
                self.dropped += 1
            except queue.Empty:
                pass
            self._waiting.put_nowait(payload)

    def pending(self) -> int:
        with self._lock:
            return self._waiting.qsize() + self.published - self.delivered

    def close(self) -> None:
        if self._stop.is_set():
            return
        if self._latest is not None:  # --publish-every: the last result and counts go too
            self._put(self._latest)
            self._latest = None
        deadline = time.monotonic() + self.flush_s
        if self.pending() and not self._refused:
            self.say(f"waiting up to {self.flush_s:g} s for the broker to take {self.pending()} records")
        while self.pending() and not self._refused and time.monotonic() < deadline:
            time.sleep(0.05)
        self._stop.set()
        self._worker.join(timeout=5.0)
        self._shut()
        missing = self.dropped + self.failed + self.pending()
        line = f"{self.delivered} records delivered to {self.broker.url}"
        if missing:
            why = [f"{self.dropped} dropped from the full queue"] if self.dropped else []
            why.append("the broker never answered" if not self._ever_connected else
                       "the rest not acknowledged when the run ended")
            line += f"; {missing} not delivered ({', '.join(why)})"
        self.say(line)

    def _shut(self) -> None:
        self._stop.set()
        self._client.disconnect()
        self._client.loop_stop()


def sink_from_args(args, say) -> MqttSink | None:
    """The --publish sink (None without --publish); --publish-every and --publish-ca need --publish."""
    url = getattr(args, "publish", None)
    if url is None:
        for flag in ("publish_every", "publish_ca"):
            if getattr(args, flag, None) is not None:
                raise UserError(f"--{flag.replace('_', '-')} needs --publish mqtt://host/topic")
        return None
    broker = Broker.parse(url)
    if args.publish_ca is not None and broker.scheme != "mqtts":
        raise UserError("--publish-ca is for mqtts:// (TLS) brokers")
    password = os.environ.get(PASSWORD_ENV) or None
    return MqttSink(broker, say, every=args.publish_every, ca=args.publish_ca, password=password)
