"""`--backend cfar`: the classical CA-CFAR baseline of inference/cfar.py, on CPU.

Scenes (amplitude, CFAR mask, detections) are cached per image (a small LRU), and the runner
feeds samples grouped by image, so the several dialogues of one image (count per category,
identify per box, ...) decode and detect once.
Image reading and detection run in a thread pool (numpy/scipy release the GIL).
"""
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from threading import Lock

from sarchat.inference import cfar
from sarchat.inference.backends.base import Backend, Result, per_sample
from sarchat.inference.dataset import image_gray_array, read_image_bytes, row_size


class CfarBackend(Backend):
    name = "cfar"
    fixed_adapter = "sarchat"
    default_batch_size = 64

    def __init__(self, config, adapter, params=None, cache_size=64):
        super().__init__(config, adapter)
        self.params = params or cfar.CfarParams()
        self._cache = OrderedDict()
        self._cache_size = cache_size
        self._lock = Lock()
        self._pool = ThreadPoolExecutor(max_workers=config.io_workers)

    def fingerprint(self):
        return {"kind": "classical", "name": "cfar", "version": cfar.CFAR_VERSION, "params": self.params.key()}

    def sampling(self):
        return {"deterministic": True}

    def _image(self, sample):
        location = sample.image_location
        with self._lock:
            hit = self._cache.get(location)
            if hit is not None:
                self._cache.move_to_end(location)
                return hit
        pixels = image_gray_array(read_image_bytes(location), location, row_size(sample.row),
                                  self.config.max_image_pixels)
        entry = cfar.Scene(pixels, self.params)
        with self._lock:
            self._cache[location] = entry
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return entry

    def _one(self, sample):
        t0 = time.perf_counter()
        text, error = per_sample(lambda: cfar.answer(sample.row, self._image(sample), p=self.params), "cfar")
        if error is not None:
            return Result.failure(error, time.perf_counter() - t0)
        return Result(text, None, time.perf_counter() - t0)

    def predict(self, samples):
        # One task per image, so an image is decoded and detected once per batch.
        groups = {}
        for i, s in enumerate(samples):
            groups.setdefault(s.image_location, []).append(i)
        results = {}
        for pairs in self._pool.map(lambda indices: [(i, self._one(samples[i])) for i in indices], groups.values()):
            results.update(pairs)
        return [results[i] for i in range(len(samples))]

    def close(self):
        self._pool.shutdown(wait=False)
