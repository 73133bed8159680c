"""Constants shared by the synthetic generator's modules: the paper's Table 1 counts, SARDet-100K
scale and the default dataset size."""
SYNTH_VERSION = 1

# Paper Table 1: boxes per category (ship, aircraft, car, tank, bridge, harbor).
TABLE1_COUNTS = {
    "train": (93373, 40705, 9561, 24187, 27615, 3306),
    "test": (10741, 6779, 1230, 1773, 3281, 399),
}
# SARDet-100K scale (images, boxes) per split.
SARDET_SCALE = {"train": (94493, 198747), "val": (10492, 22703), "test": (11613, 24023)}

DEFAULT_IMAGES = 200
DEFAULT_TEST_FRACTION = 0.12
MIN_TEST_IMAGES = 5
