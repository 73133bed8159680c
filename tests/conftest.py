"""Shared fixtures: small hand-written COCO datasets with known boxes."""
import json
import os

import pytest

CATEGORIES = [{"id": i, "name": n} for i, n in enumerate(["ship", "aircraft", "car", "tank", "bridge", "harbor"])]


def write_coco(root, split, images, annotations, categories=None):
    path = os.path.join(root, "Annotations", f"{split}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"images": images, "annotations": annotations,
                   "categories": CATEGORIES if categories is None else categories}, f)
    return path


def known_dataset():
    """Test split with boxes whose dialogues are worked out by hand in the tests."""
    images = [
        {"id": 1, "file_name": "harbor_scene.jpg", "width": 512, "height": 512},
        {"id": 2, "file_name": "small.png", "width": 200, "height": 200},
        {"id": 3, "file_name": "airport.jpg", "width": 800, "height": 800},
    ]
    annotations = [
        {"id": 10, "image_id": 1, "category_id": 0, "bbox": [294.2, 358.0, 35.0, 69.0]},   # ship, bottom center
        {"id": 11, "image_id": 1, "category_id": 0, "bbox": [60.5, 448.0, 61.0, 55.0]},    # ship, bottom left
        {"id": 12, "image_id": 1, "category_id": 5, "bbox": [300.0, 20.0, 150.0, 120.0]},  # harbor, top right
        {"id": 13, "image_id": 2, "category_id": 1, "bbox": [10.0, 10.0, 50.0, 40.0]},     # aircraft
        {"id": 14, "image_id": 3, "category_id": 1, "bbox": [100.0, 100.0, 300.0, 280.0]}, # aircraft, large
        {"id": 15, "image_id": 3, "category_id": 2, "bbox": [500.0, 600.0, 20.0, 10.0]},   # car
    ]
    return images, annotations


@pytest.fixture
def known_root(tmp_path):
    images, annotations = known_dataset()
    root = tmp_path / "data"
    write_coco(str(root), "test", images, annotations)
    write_coco(str(root), "train", images[:1], annotations[:3])
    return root
