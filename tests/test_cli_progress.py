"""Long steps report progress: the CLI's one stderr bar, and the callback `evaluate` feeds it through."""

import numpy as np
import torch

from emocloak.attacks.registry import make_attack
from emocloak.evaluation import Samples, evaluate
from emocloak.labels import LABELS
from emocloak.recognizers.base import Recognizer
from emocloak.recognizers.facenet import FaceNet


def test_evaluate_reports_images_done_after_each_chunk(one_thread):
    torch.manual_seed(0)
    rec = Recognizer("toy", FaceNet("vgg", width=8), LABELS, 48)
    face = np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    samples = Samples([face] * 34, np.zeros(34, np.int64), [f"f{i}" for i in range(34)], detect=False)
    calls = []
    evaluate(samples, rec, make_attack("fgsm:eps=4"), progress=lambda done, total: calls.append((done, total)))
    assert calls == [(32, 34), (34, 34)]


def test_the_bar_names_the_item_under_way():
    from emocloak.cli.common import progress_bar

    with progress_bar("cloaking photo", 10) as bar:
        bar.at(2, "[b]c.jpg")
        task = bar._progress.tasks[0]
        assert task.description == "cloaking photo 3/10: \\[b]c.jpg" and task.completed == 2  # markup escaped
        bar.within("cloaking face 1 of 2", 0.25)  # a long photo moves the bar as its cloak steps
        assert task.completed == 2.25 and task.description.endswith("c.jpg (cloaking face 1 of 2)")
        bar(10)
        assert task.finished


def test_time_left_shows_for_items_slower_than_rich_keeps_steps():
    """Two photos of three done in 200 s: 100 s left, though rich's own estimate forgets steps after 30 s."""
    from rich.progress import Progress

    from emocloak.progress import TimeLeft

    now = [100.0]
    progress = Progress(TimeLeft(), get_time=lambda: now[0])
    task = progress.add_task("cloaking photo", total=3)
    now[0] = 300.0
    progress.update(task, completed=2)
    assert TimeLeft().render(progress.tasks[0]).plain == "0:01:40"
