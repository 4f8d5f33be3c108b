import csv

import cv2
import numpy as np
import pytest
from conftest import solid_frame
from edgevision.camera import collect as C
from edgevision.camera.review import Reviewer
from edgevision.deploy.errors import UserError
from edgevision.training.data import find_dataset

KEY = {str(i): ord(str(i)) for i in range(1, 10)} | {"u": ord("u"), "q": ord("q")}


def frame(i: int = 0, h: int = 120, w: int = 160) -> np.ndarray:
    img = solid_frame(h, w, (i * 20 % 255, 100, 200))
    img[0, 0] = i  # tell frames apart
    return img


def classes_collector(root, **kw) -> C.Collector:
    return C.Collector(C.CollectOptions(root=root, classes=("up", "down"), **kw))


def files(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_class_keys_save_frames_into_class_folders_with_counts(tmp_path):
    col = classes_collector(tmp_path / "data")
    assert col.on_key(KEY["1"], frame(1), 0.0)
    col.on_key(KEY["1"], frame(2), 0.1)
    col.on_key(KEY["2"], frame(3), 0.2)
    col.on_key(KEY["2"], frame(4), 0.3)
    assert (col.count("up"), col.count("down")) == (2, 2)
    assert len(files(tmp_path / "data" / "up")) == 2 and len(files(tmp_path / "data" / "down")) == 2
    assert col.active == 1  # the last key pressed makes its class active
    ds = find_dataset(tmp_path / "data", val_split=0.3)  # the layout train reads
    assert ds.classes == ("down", "up")


def test_undo_moves_the_last_save_to_the_trash_and_restores_counts(tmp_path):
    col = classes_collector(tmp_path)
    first = col.save_class(frame(1), 0)
    second = col.save_class(frame(2), 0)
    undone = col.undo()
    assert undone == second and col.count("up") == 1
    assert first.path.exists() and not second.path.exists()
    trashed = tmp_path / C.TRASH / "up" / second.path.name
    assert trashed.exists()  # nothing is deleted
    assert col.undo() == first and col.undo() is None and col.message == "nothing to undo"
    assert len(files(tmp_path / C.TRASH / "up")) == 2


def test_tab_and_arrows_switch_the_active_class_and_space_toggles_auto_capture(tmp_path):
    col = classes_collector(tmp_path)
    col.on_key(C.KEY_TAB, frame(), 0.0)
    assert col.active == 1
    col.on_key(65361, frame(), 0.0)  # left arrow (X11)
    assert col.active == 0
    col.on_key(C.KEY_SPACE, frame(), 10.0)
    saves = [col.tick(frame(i), 10.0 + i * 0.1) for i in range(11)]  # one second at 2 saves/s
    assert sum(s is not None for s in saves) == 3  # at 10.0, 10.5 and 11.0
    col.on_key(C.KEY_SPACE, frame(), 11.1)
    assert col.tick(frame(), 12.0) is None and col.count("up") == 3


def test_an_unknown_class_key_is_said_on_screen_and_saves_nothing(tmp_path):
    col = classes_collector(tmp_path)
    assert col.on_key(KEY["5"], frame(), 0.0)
    assert "no class 5" in col.message and col.count("up") + col.count("down") == 0


def test_resume_continues_counts_and_never_overwrites(tmp_path):
    col = classes_collector(tmp_path)
    paths = [col.save_class(frame(i), 0).path for i in range(3)]
    again = classes_collector(tmp_path)
    assert again.count("up") == 3
    new = again.save_class(frame(9), 0).path
    assert new not in paths and all(p.exists() for p in paths) and again.count("up") == 4


def test_a_validation_share_goes_to_val_folders_and_is_seeded(tmp_path):
    col = classes_collector(tmp_path / "a", val_fraction=0.3, seed=1)
    splits = [col.save_class(frame(i), i % 2).split for i in range(40)]
    twin = classes_collector(tmp_path / "b", val_fraction=0.3, seed=1)
    assert splits == [twin.save_class(frame(i), i % 2).split for i in range(40)]
    assert 4 <= splits.count("val") <= 20 and set(splits) == {"train", "val"}
    assert find_dataset(tmp_path / "a").split_given


def test_mixing_split_and_unsplit_layouts_is_refused(tmp_path):
    classes_collector(tmp_path).save_class(frame(), 0)
    with pytest.raises(UserError, match="already holds no train/val split: drop --split"):
        classes_collector(tmp_path, val_fraction=0.2)


def test_writing_into_a_file_path_is_a_clear_error(tmp_path):
    target = tmp_path / "data"
    target.write_text("not a folder")
    with pytest.raises(UserError, match="is a file, not a folder"):
        classes_collector(target)


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "needs at least one name"), ("a,a", "must be unique"), ("a/b,c", "not a plain name")],
)
def test_bad_names_are_refused(text, message):
    with pytest.raises(UserError, match=message):
        C.parse_names(text, "classes")


def test_split_option_parsing():
    assert C.parse_split("val=0.2") == 0.2 and C.parse_split(None) == 0.0
    with pytest.raises(UserError, match="looks like val=0.2"):
        C.parse_split("0.2")


def points_collector(root, names=("nose", "chin"), **kw) -> C.Collector:
    return C.Collector(C.CollectOptions(root=root, points=names, **kw))


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_points_are_placed_in_order_on_a_frozen_frame_and_saved_with_enter(tmp_path):
    col = points_collector(tmp_path)
    live, later = frame(1, 480, 640), frame(2, 480, 640)
    col.click(100, 50, live)  # the first click freezes the frame
    col.click(200, 300, later)  # later frames do not replace the frozen one
    assert col.on_key(13, later, 1.0)  # Enter
    saved = col.undo_stack[-1]
    rows = read_rows(tmp_path / "labels.csv")
    expected = {"file": saved.path.name, "nose_x": "100.0", "nose_y": "50.0", "chin_x": "200.0", "chin_y": "300.0"}
    assert rows == [expected]
    stored = C.cv2.imread(str(saved.path))
    assert stored.shape == (480, 640, 3) and int(stored[0, 0, 0]) in range(0, 4)  # the frozen (first) frame
    assert col.frozen is None and col.count() == 1


def test_points_saved_in_full_resolution_when_the_display_was_scaled(tmp_path):
    col = points_collector(tmp_path, names=("nose",))
    big = frame(1, 1440, 2560)
    scale = C.display_scale(big.shape[:2])  # the window shows 1280x720
    assert scale == 0.5
    x, y = C.display_to_source(640, 360, scale)  # a click in the middle of the window
    col.click(x, y, big)
    col.confirm(0.0)
    row = read_rows(tmp_path / "labels.csv")[0]
    assert abs(float(row["nose_x"]) - 1280.5) <= 1 and abs(float(row["nose_y"]) - 720.5) <= 1


def test_enter_before_all_points_are_placed_saves_nothing_and_esc_discards(tmp_path):
    col = points_collector(tmp_path)
    col.click(10, 10, frame())
    col.on_key(13, frame(), 0.0)
    assert "place chin first" in col.message and col.count() == 0
    col.on_key(C.KEY_BACKSPACE, frame(), 0.0)
    assert col.pending == []
    col.on_key(C.KEY_ESC, frame(), 0.0)  # discards the frozen frame
    assert col.frozen is None
    assert not col.on_key(C.KEY_ESC, frame(), 0.0)  # Esc with nothing pending quits


def test_clicks_outside_the_frame_are_refused(tmp_path):
    col = points_collector(tmp_path, names=("nose",))
    col.click(500, 5, frame(0, 120, 160))
    assert col.pending == [] and "outside" in col.message


def test_undo_of_points_moves_the_image_and_its_row_to_the_trash(tmp_path):
    col = points_collector(tmp_path, names=("nose",))
    for i in range(2):
        col.click(10 + i, 20, frame(i))
        col.confirm(0.0)
    undone = col.undo()
    rows = read_rows(tmp_path / "labels.csv")
    assert [r["file"] for r in rows] == [col.undo_stack[0].path.name]
    assert (tmp_path / C.TRASH / "images" / undone.path.name).exists()
    assert read_rows(tmp_path / C.TRASH / f"removed_{C.LABELS_CSV}")[0]["file"] == undone.path.name


def test_points_resume_and_refuse_a_csv_of_other_point_names(tmp_path):
    col = points_collector(tmp_path, names=("nose",), val_fraction=0.5, seed=3)
    for i in range(6):
        col.click(5, 5, frame(i))
        col.confirm(0.0)
    assert points_collector(tmp_path, names=("nose",), val_fraction=0.5).count() == 6
    with pytest.raises(UserError, match="not those of --points"):
        points_collector(tmp_path, names=("left_eye",), val_fraction=0.5)


def test_review_deletes_to_the_trash_and_relabels_between_classes(tmp_path):
    col = classes_collector(tmp_path)
    saved = [col.save_class(frame(i), i % 2) for i in range(4)]
    reviewer = Reviewer(classes_collector(tmp_path))
    assert len(reviewer.items) == 4 and reviewer.render() is not None
    first = reviewer.current()
    reviewer.on_key(ord("d"))
    assert not first.exists() and (tmp_path / C.TRASH / first.parent.name / first.name).exists()
    moving = reviewer.current()
    target = 1 if moving.parent.name == "up" else 0
    reviewer.on_key(ord(str(target + 1)))
    assert (tmp_path / ("up", "down")[target] / moving.name).exists()
    assert sum(p.path.exists() for p in saved) == 2  # one trashed, one moved, two untouched
    assert reviewer.collector.count("up") + reviewer.collector.count("down") == 3


def test_review_of_points_draws_them(tmp_path):
    col = points_collector(tmp_path, names=("nose",))
    col.click(40, 30, frame(0))
    col.confirm(0.0)
    reviewer = Reviewer(points_collector(tmp_path, names=("nose",)))
    assert reviewer.points_of(reviewer.current()) == [(40.0, 30.0)]
    view = reviewer.render()
    assert view.shape == (120, 160, 3)


def test_render_shows_names_counts_and_a_flash_after_a_save(tmp_path):
    col = classes_collector(tmp_path)
    before = col.render(frame(), 0.0)
    col.save_class(frame(), 0, now=0.0)
    flashed = col.render(frame(), 0.1)
    assert (flashed[0, :] != before[0, :]).any()  # the border cue
    assert (col.render(frame(), 1.0)[0, :] == before[0, :]).all()
    assert "edgevision train" in col.train_hint()


def test_review_never_moves_files_from_outside_the_dataset(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    cv2.imwrite(str(outside / "precious.jpg"), np.zeros((8, 8, 3), np.uint8))
    root = tmp_path / "data"
    (root / "down").mkdir(parents=True)
    (root / "up").symlink_to(outside, target_is_directory=True)  # a class folder that points out
    cv2.imwrite(str(root / "down" / "mine.jpg"), np.zeros((8, 8, 3), np.uint8))
    (root / "down" / "link.jpg").symlink_to(outside / "precious.jpg")
    reviewer = Reviewer(classes_collector(root))
    assert [p.name for p in reviewer.items] == ["mine.jpg"]
    reviewer.delete()
    assert (outside / "precious.jpg").is_file() and not (root / "down" / "mine.jpg").exists()
