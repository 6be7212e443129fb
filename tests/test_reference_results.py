"""The foundation's accuracy targets on full real data with default settings.

Slow (minutes to tens of minutes on 2 CPU cores): run on purpose with ``pytest -m slow``.
The measured numbers are in the README.
"""

import pytest

from attnexplain import TrainConfig, load_dataset, train

pytestmark = [pytest.mark.slow, pytest.mark.large]


@pytest.mark.parametrize(("dataset", "target"), [("rt-sentences", 0.75), ("imdb", 0.87)])
def test_bilstm_reaches_the_target_and_average_stays_close(dataset, target, tmp_path):
    data = load_dataset(dataset)
    lstm = train(data, tmp_path / "lstm", {"encoder": "lstm"}, TrainConfig(), progress=False)
    average = train(data, tmp_path / "avg", {"encoder": "average"}, TrainConfig(), progress=False)
    assert lstm.test["f1"] >= target
    assert average.test["f1"] >= lstm.test["f1"] - 0.04
