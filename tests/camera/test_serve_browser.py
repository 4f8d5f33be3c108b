"""The ``--serve`` page in a real headless browser (Debian's Chromium + chromedriver, driven by Selenium):
the run page's image and label update on a clip; the collect page's buttons and clicks write files."""

from __future__ import annotations

import csv
import shutil
import time

import pytest
from conftest import REPO
from test_serve import served  # noqa: F401  the fixture

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the 'dev' extra has it)")
from selenium.webdriver.common.actions.action_builder import ActionBuilder  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                reason="no chromium/chromedriver (Debian: apt-get install chromium chromium-driver; "
                                       ".ci/run installs them)")


@pytest.fixture
def browser():
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,700"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)  # the system driver: no download
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def wait(predicate, timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_the_run_page_shows_the_live_image_and_the_label_changing(served, browser, synthetic_video,  # noqa: F811
                                                                  tiny_model):
    s = served("run", "--model", tiny_model("classify"), "--source", synthetic_video(90, size=(96, 128)),
               "--loop", "--no-display", "--serve", "0")
    browser.get(s.link)
    image = browser.find_element(By.ID, "frame")
    wait(lambda: browser.execute_script("return arguments[0].naturalWidth", image) == 128, what="the MJPEG image")
    assert browser.find_element(By.ID, "provider").text == "CPU"
    assert "classify.onnx" in browser.find_element(By.ID, "model").text
    shot = image.screenshot_as_png
    wait(lambda: image.screenshot_as_png != shot, what="the image to change")
    labels = set()
    wait(lambda: labels.add(browser.find_element(By.ID, "label").text.split()[0] if
                            browser.find_element(By.ID, "label").text.strip() not in ("", "…") else "")
         or len(labels - {""}) >= 2, what="the label to change")
    assert labels - {""} <= {"red", "green", "blue"}
    frame = int(browser.find_element(By.ID, "frameno").text)
    wait(lambda: int(browser.find_element(By.ID, "frameno").text) != frame, what="the frame number to move")


def test_the_collect_page_saves_by_button_and_places_points_by_click(served, browser, synthetic_video,  # noqa: F811
                                                                     tmp_path):
    data = tmp_path / "data"
    s = served("collect", data, "--classes", "up,down", "--source", synthetic_video(900), "--serve", "0")
    browser.get(s.link)
    wait(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#classes button")) == 2, what="the class buttons")
    down = browser.find_elements(By.CSS_SELECTOR, "#classes button")[1]
    assert "down (0)" in down.text
    down.click()
    wait(lambda: len(list((data / "down").glob("*.jpg"))) == 1, what="the saved file")
    wait(lambda: "down (1)" in browser.find_elements(By.CSS_SELECTOR, "#classes button")[1].text, what="the count")
    assert "active" in browser.find_elements(By.CSS_SELECTOR, "#classes button")[1].get_attribute("class")
    s.post("/key", {"key": "q"})
    assert s.proc.wait(timeout=20) == 0

    points = tmp_path / "points"
    s = served("collect", points, "--points", "nose", "--source", synthetic_video(900, size=(96, 128)),
               "--serve", "0")
    browser.get(s.link)
    image = browser.find_element(By.ID, "frame")
    wait(lambda: browser.execute_script("return arguments[0].naturalWidth", image) == 128, what="the image")
    rect = "const r = arguments[0].getBoundingClientRect(); return [r.left, r.top, r.width, r.height]"
    boxes = [browser.execute_script(rect, image)]
    wait(lambda: boxes.append(browser.execute_script(rect, image)) or boxes[-1] == boxes[-2],
         what="the page layout to settle")
    left, top, width, height = boxes[-1]
    x, y = int(left + 0.7 * width), int(top + 0.4 * height)  # a click in the window's pixels
    actions = ActionBuilder(browser)
    actions.pointer_action.move_to_location(x, y).click()
    actions.perform()
    wait(lambda: "save" in browser.find_element(By.ID, "actions").text and
         "All points placed" in browser.find_element(By.ID, "help").text, what="the point to be placed")
    next(b for b in browser.find_elements(By.CSS_SELECTOR, "#actions button") if "save" in b.text).click()
    wait(lambda: (points / "labels.csv").exists(), what="labels.csv")
    row = list(csv.DictReader((points / "labels.csv").open()))[0]
    scale = 128 / width  # page pixels -> the frame's pixels
    assert abs(float(row["nose_x"]) - (x - left) * scale) <= 1.5 * scale
    assert abs(float(row["nose_y"]) - (y - top) * scale) <= 1.5 * scale
    assert (points / "images" / row["file"]).is_file()


def test_the_run_page_shows_track_ids_and_counts(served, browser):  # noqa: F811
    s = served("run", "--model", REPO / "models" / "thumbs_chain.json", "--source",
               REPO / "camera" / "samples" / "thumbs_demo.mp4", "--loop", "--no-display", "--serve", "0",
               "--track", "--count-line", "door=0,220,480,220", "--zone", "table=0,250,480,250,480,400,0,400")
    browser.get(s.link)
    wait(lambda: browser.find_element(By.ID, "detail").text.startswith("#"), what="a track id on the detection")
    wait(lambda: "door" in browser.find_element(By.ID, "counts").text, what="the counts table")
    counts = browser.find_element(By.ID, "counts").text
    assert "table" in counts and "inside:" in counts and "out:" in counts


@pytest.mark.parametrize("task,shown", [("pose", "("), ("segment", " px")])
def test_the_run_page_shows_a_yolo_models_points_and_mask_areas(served, browser, synthetic_video, tmp_path,  # noqa: F811
                                                                task, shown):
    """Models made elsewhere (Ultralytics YOLO layouts, tests/yolomodels.py) in the page: each box with its
    points (pose) or its mask's area in pixels (segment), as the JSON has them."""
    from test_cli_yolo import yolo_model

    s = served("run", "--model", yolo_model(task, tmp_path / f"{task}.onnx"), "--source",
               synthetic_video(90, size=(200, 480)), "--loop", "--no-display", "--serve", "0")
    browser.get(s.link)
    wait(lambda: browser.find_element(By.ID, "detail").text.strip() not in ("", "…"), what="the detection")
    detail = browser.find_element(By.ID, "detail").text
    assert ("person" if task == "pose" else "cat") in detail and "[190, 75, 290, 125]" in detail, detail
    assert shown in detail.split("]", 1)[1], detail  # after the box: its points, or its mask's area
