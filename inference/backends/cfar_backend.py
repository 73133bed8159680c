"""`--backend cfar`: the classical CA-CFAR baseline of inference/cfar.py, on CPU.

Scenes (amplitude, CFAR mask, detections) are cached per image (a small LRU, an ImageCache of
`cache_size` scenes, each hit's row size checked as for the model backends), and the runner feeds
samples grouped by image, so the several dialogues of one image (count per category, identify per
box, ...) decode and detect once.
Image reading and detection run in a thread pool (numpy/scipy release the GIL).
"""
import time
from concurrent.futures import ThreadPoolExecutor

from sarchat.inference import cfar
from sarchat.inference.backends.base import Backend, Result, per_sample
from sarchat.inference.dataset import ImageCache, image_gray_array, row_size


class CfarBackend(Backend):
    name = "cfar"
    fixed_adapter = "sarchat"
    default_batch_size = 64

    def __init__(self, config, adapter, params=None, cache_size=64):
        super().__init__(config, adapter)
        self.params = params or cfar.CfarParams()
        self._scenes = ImageCache(max_pixels=config.max_image_pixels, load=self._scene, weigh=lambda scene: 1,
                                  max_bytes=cache_size)
        self._pool = ThreadPoolExecutor(max_workers=config.io_workers)

    def fingerprint(self):
        return {"kind": "classical", "name": "cfar", "version": cfar.CFAR_VERSION, "params": self.params.key()}

    def sampling(self):
        return {"deterministic": True}

    def _scene(self, data, location, expected_size):
        pixels = image_gray_array(data, location, expected_size, self.config.max_image_pixels)
        return cfar.Scene(pixels, self.params), pixels.shape[::-1]

    def _one(self, sample):
        t0 = time.perf_counter()
        text, error = per_sample(lambda: cfar.answer(
            sample.row, self._scenes.get(sample.image_location, row_size(sample.row)), p=self.params), "cfar")
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
