
import cv2
from conftest import solid_frame
from edgevision.camera.bench_robustness import main, robustness
from edgevision.deploy.images import collect_images
from edgevision.deploy.runner import Runner, RunnerOptions


def test_robustness_scores_each_change_against_the_folder_label(tiny_model, tmp_path, capsys):
    (tmp_path / "blue").mkdir()
    (tmp_path / "unlabelled").mkdir()
    for i in range(3):
        cv2.imwrite(str(tmp_path / "blue" / f"{i}.png"), solid_frame(40, 60, (255, 0, 0)))
    cv2.imwrite(str(tmp_path / "unlabelled" / "x.png"), solid_frame(40, 60))
    runner = Runner(tiny_model("classify"), RunnerOptions(providers="cpu"))
    scores = robustness(runner, collect_images([str(tmp_path)]))
    assert scores["original"] == 1.0 and scores["mirror"] == 1.0 and scores["crop 60% top-left"] == 1.0
    assert scores["grey"] == 0.0  # a colour classifier cannot survive losing colour
    assert main(["--model", str(runner.path), str(tmp_path)]) == 0
    assert "all changes" in capsys.readouterr().out
