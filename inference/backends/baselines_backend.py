"""`--backend oracle` and `--backend blind`: wrappers of inference/baselines.py.

oracle: `baselines.oracle_prediction(row)`, the reference answer rewritten as a prediction (every
        non-null column must score 100; a check of the scorer).
blind:  `baselines.BlindPrior().fit(train rows)` then `.predict(row)`: answers from the question
        and training-set priors only, never the image (the floor that shows what text alone gets).
        Fitted on `--fit-split` (default train) of the same dataset (a split the manifest does not
        list stops the run with one line); `--blind-question-box` lets
        it read the box an identify question names (BlindPrior(use_question_box=True)).
Both answer in canonical boxes (adapter `sarchat`) and read no image.
"""
import time
from typing import Callable

from sarchat.inference.backends.base import Backend, Result
from sarchat.inference.dataset import iter_tables, split_files


class _Baseline(Backend):
    """What both baselines share: canonical boxes, no image, a deterministic answer per row."""

    fixed_adapter = "sarchat"
    default_batch_size = 512
    reads_images = False
    _answer: Callable[[dict], str]  # the row's answer, set by setup()

    def sampling(self):
        return {"deterministic": True}

    def predict(self, samples):
        out = []
        for s in samples:
            t0 = time.perf_counter()
            try:
                out.append(Result(self._answer(s.row), None, time.perf_counter() - t0))
            except Exception as exc:
                out.append(Result.failure(f"{self.name}: {type(exc).__name__}: {exc}"))
        return out


class OracleBackend(_Baseline):
    name = "oracle"
    columns = ("answer",)

    def fingerprint(self):
        return {"kind": "baseline", "name": "oracle"}

    def setup(self):
        from sarchat.inference import baselines

        self._answer = baselines.oracle_prediction


class BlindBackend(_Baseline):
    name = "blind"
    columns = ()  # task, question, width, height: dataset.BASE_COLUMNS

    def fingerprint(self):
        # The training rows are those of the run's dataset version, which the run key holds; the
        # split must exist (checked here, before any work: a --fit-split with no data is one line).
        split_files(self.config.dataset, self.config.fit_split, flag="--fit-split")
        return {"kind": "baseline", "name": "blind", "fit_split": self.config.fit_split,
                "use_question_box": bool(self.config.blind_question_box)}

    def setup(self):
        from sarchat.inference import baselines

        prior = baselines.BlindPrior(use_question_box=bool(self.config.blind_question_box))
        # only the columns the prior reads, as Arrow batches (fit_tables counts them column-wise)
        prior.fit_tables(iter_tables(self.config.dataset, self.config.fit_split, baselines.FIT_COLUMNS,
                                     flag="--fit-split"))
        self._answer = prior.predict
