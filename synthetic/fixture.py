"""A tiny synthetic SAR dialogue set for tests and benchmarks of the inference stage.

Not the dataset generator (`sarchat synth` + `sarchat generate` are): this writes, in one call,
images of speckled sea or land with bright scatterer targets (ships on sea; aircraft, cars and
tanks on land; bridges over a river; harbors), and a `parquet/<split>/dialogues-*.parquet` with
DIALOGUE_SCHEMA rows for every task (built by sarchat.transforms.generate.dialogues.DialogueBuilder, one identify
question per box), plus `manifest.json` with `input_root`, i.e. the layout
`sarchat infer` reads. Deterministic for a seed.
"""
import hashlib
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sarchat.synthetic.scene_plan import SCENES
from sarchat.synthetic.scene_render import render_scene
from sarchat.transforms.generate import records
from sarchat.transforms.generate.dialogues import DialogueBuilder
from sarchat.transforms.schema import DIALOGUE_SCHEMA


def make_scene(rng, size=256):
    """(uint8 image, [(category, [x1,y1,x2,y2]), ...]) for one synthetic SAR scene, drawn by the
    dataset generator's own renderer (sarchat.synthetic.scene_render): one generator for the whole
    toolkit. The scene type and the renderer's seed come from `rng`."""
    scene = SCENES[int(rng.integers(len(SCENES)))]
    seed, index = int(rng.integers(2 ** 31)), int(rng.integers(2 ** 31))
    img, annotations = render_scene(seed, "fixture", index, scene, size)
    return img, [(cat, [int(x), int(y), int(x + w), int(y + h)]) for cat, (x, y, w, h) in annotations]


def _rows_for_image(builder, split, image_id, rel_path, w, h, objects):
    """Dialogue rows (DIALOGUE_SCHEMA dicts) for one image, built by the generator's own builder."""
    image = {"split": split, "image_id": image_id, "file_name": rel_path.rsplit("/", 1)[-1], "image_path": rel_path,
             "width": w, "height": h,
             "boxes": [{"ann_id": i, "category": cat, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]}
                       for i, (cat, b) in enumerate(objects)]}
    rows, _ = builder.build(image)
    return records.rows_to_table(rows).to_pylist()


def write_fixture_dataset(out_dir, n_images=8, size=256, seed=0, splits=("test",), shards=2, image_ext="png"):
    """Write images under OUT/images_root/JPEGImages/<split>/ and the dialogues under OUT/generated/.

    Returns (generated folder, image root, {split: rows}).
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    image_root = os.path.join(out_dir, "images_root")
    generated = os.path.join(out_dir, "generated")
    all_rows, files = {}, []
    for split in splits:
        img_dir = os.path.join(image_root, "JPEGImages", split)
        os.makedirs(img_dir, exist_ok=True)
        rows = []
        builder = DialogueBuilder(seed=seed, identify_variants=1)
        for k in range(n_images):
            img, objects = make_scene(rng, size)
            name = f"{split}_{k:04d}.{image_ext}"
            Image.fromarray(img, mode="L").save(os.path.join(img_dir, name))
            rows.extend(_rows_for_image(builder, split, k, f"JPEGImages/{split}/{name}", size, size, objects))
        rows.sort(key=lambda r: r["id"])
        all_rows[split] = rows
        pdir = os.path.join(generated, "parquet", split)
        os.makedirs(pdir, exist_ok=True)
        for s in range(shards):
            part = [r for j, r in enumerate(rows) if j % shards == s]
            rel = f"parquet/{split}/dialogues-{s:05d}-of-{shards:05d}.parquet"
            path = os.path.join(generated, *rel.split("/"))
            pq.write_table(pa.Table.from_pylist(part, schema=DIALOGUE_SCHEMA), path)
            files.append({"path": rel, "bytes": os.path.getsize(path), "rows": len(part)})
    # The manifest lists every file with its size, as `sarchat generate`'s does (consumers read the
    # list from it), and names a dataset version: a hash of the files' bytes.
    digest = hashlib.sha256()
    for f in files:
        with open(os.path.join(generated, *f["path"].split("/")), "rb") as fh:
            digest.update(f["path"].encode() + b"\0" + fh.read())
    manifest = {"input_root": image_root, "seed": seed, "fixture": True, "files": files,
                "dataset_version": "fixture-" + digest.hexdigest()[:16]}
    with open(os.path.join(generated, "manifest.json"), "w", encoding="utf-8") as fh:
        json.dump(manifest, fh)
    return generated, image_root, all_rows


def main(argv=None):
    """`python -m sarchat.synthetic.fixture OUT [--images N] [--size S] [--seed K]`: a Beam-free fixture
    dataset; prints the generated folder (the --dataset of `sarchat infer`)."""
    import argparse

    p = argparse.ArgumentParser(description="write a tiny synthetic dialogue set for `sarchat infer`")
    p.add_argument("out")
    p.add_argument("--images", type=int, default=16)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    generated, _, rows = write_fixture_dataset(args.out, n_images=args.images, size=args.size, seed=args.seed)
    print(generated)
    return 0


if __name__ == "__main__":
    main()
