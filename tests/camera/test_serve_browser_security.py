"""Another page in the same real browser (Debian's Chromium through Selenium) cannot drive ``collect
--serve``: a page on another port of 127.0.0.1 (same site, so the page's cookie goes with its requests)
posts a text/plain form and no-cors fetches whose bodies are whole second requests, and nothing is saved;
the collect page itself, opened again without the token, still works through its cookie."""

from __future__ import annotations

import functools
import http.server
import threading

import pytest
from test_serve import served as served  # the fixture
from test_serve_browser import CHROMEDRIVER, CHROMIUM, wait  # (skips this file too where selenium is missing)
from test_serve_browser import browser as browser  # the fixture

By = pytest.importorskip("selenium.webdriver.common.by", reason="selenium is not installed").By

pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="no chromium/chromedriver (Debian: apt-get "
                                "install chromium chromium-driver; .ci/run installs them)")

ATTACK = """<!doctype html><html><body><iframe name="sink"></iframe>
<form id="form" method="POST" action="http://127.0.0.1:{port}/key" enctype="text/plain" target="sink"></form>
<script>
const target = "http://127.0.0.1:{port}/key";
const json = '{{"key":"1","x":"="}}';  // the form adds "=" between a field's name and value: inside a string here
const second = "POST /key HTTP/1.1\\r\\nHost: 127.0.0.1:{port}\\r\\nContent-Type: application/json\\r\\n"
  + `Content-Length: ${{json.length}}\\r\\n\\r\\n`;
const done = new Set();
const mark = (what) => {{ done.add(what); if (done.size === 3) document.title = "sent"; }};
addEventListener("load", () => {{
  const field = document.createElement("input");
  field.type = "hidden"; field.name = second + json.slice(0, -3); field.value = json.slice(-2);
  document.getElementById("form").append(field);
  document.querySelector("iframe").addEventListener("load", () => mark("form"));
  document.getElementById("form").submit();
  const post = (body) => fetch(target, {{ method: "POST", mode: "no-cors", credentials: "include",
                                         headers: {{ "Content-Type": "text/plain" }}, body }});
  post(second + json).finally(() => mark("smuggling fetch"));
  post('{{"key":"1"}}').finally(() => mark("plain fetch"));
}});
</script></body></html>"""


@pytest.fixture
def other_site():
    """attack(port) -> the URL of the attacking page, served on another port of 127.0.0.1."""
    servers = []

    def start(port: int) -> str:
        page = ATTACK.format(port=port).encode()

        class Page(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *args) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
        threading.Thread(target=functools.partial(server.serve_forever, poll_interval=0.2), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_a_page_on_another_port_saves_nothing_and_the_page_works_by_its_cookie(served, browser, other_site,
                                                                              synthetic_video, tmp_path):
    data = tmp_path / "data"
    s = served("collect", data, "--classes", "up,down", "--source", synthetic_video(900), "--serve", "0")
    browser.get(s.link)  # the printed URL: the page, and its cookie
    wait(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#classes button")) == 2, what="the class buttons")
    browser.get(other_site(s.port))
    wait(lambda: browser.title == "sent", what="the other page's form and fetches to be answered")
    assert s.post("/key", {"key": "2"}) == 200  # queued behind anything the other page got in
    wait(lambda: len(list((data / "down").glob("*.jpg"))) == 1, what="the save to down")
    assert not list((data / "up").glob("*.jpg")), "the other page saved a photo"
    browser.get(s.url)  # without the token: the cookie opens the page, its stream, events and posts
    wait(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#classes button")) == 2, what="the class buttons")
    wait(lambda: browser.execute_script("return document.getElementById('frame').naturalWidth") > 0,
         what="the MJPEG image")
    browser.find_elements(By.CSS_SELECTOR, "#classes button")[1].click()
    wait(lambda: len(list((data / "down").glob("*.jpg"))) == 2, what="the page's own save")
    assert not list((data / "up").glob("*.jpg")), "the other page saved a photo"
    s.post("/key", {"key": "q"})
    assert s.proc.wait(timeout=20) == 0
