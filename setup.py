"""SARChat-Bench toolkit: SAR dialogue generation, VLM inference and scoring.

The distribution installs one import name, `sarchat`. The repository keeps one top-level folder per
part (beam_pipelines/, transforms/, templates/, inference/, report/, synthetic/); `sarchat/` holds
a relative symbolic link to each, so a plain `find_packages` sees `sarchat.transforms...` and a
wheel or sdist holds real files under sarchat/ (docs/architecture.md, "One import name").
"""
from setuptools import find_packages, setup

# Versions pinned here are the ones the Dockerfile and CI use (constraints.txt mirrors them).
BEAM_VERSION = "2.77.0"

setup(
    name="sarchat-bench",
    version="0.2.0",
    description="Generate SARChat-2M style SAR dialogues, run VLM inference, score SARChat-Bench.",
    python_requires=">=3.10",
    # find_packages follows the links in sarchat/. The empty package_dir makes an editable install a
    # plain .pth entry for the checkout (not an import hook), which pyright and mypy can follow.
    packages=find_packages(include=["sarchat", "sarchat.*"]),
    package_dir={"": "."},
    package_data={"sarchat.templates": ["*.json"], "sarchat.beam_pipelines": ["flex_templates/*.json"],
                  "sarchat.report": ["paper_table3.json", "*.j2", "*.js"], "sarchat.transforms.stats": ["paper_stats.json"],
                  "sarchat.transforms": ["adapter_files/*.json"], "sarchat.transforms.generate": ["*.j2"],
                  "sarchat.transforms.score": ["*.j2"],
                  "sarchat.inference": ["gpu_smoke.sh"]},
    install_requires=[
        # Google Cloud (Beam's gcp extra, gcsfs) is the `gcp` extra: the local pipelines and the demo
        # never use it, and it is most of the install's time and size (README, "Install size").
        f"apache-beam=={BEAM_VERSION}",
        "pyarrow>=15",
        "numpy>=1.24",
        "pillow>=10",
        "fsspec>=2023.1",
        # Hungarian matching for multi-box scoring; a hand-written version would be slower and riskier.
        "scipy>=1.10",
        # Progress bars with rate and ETA for the inference stage.
        "tqdm>=4.60",
        # Charts for the HTML report and the dataset statistics.
        "matplotlib>=3.7",
        # TFRecord framing needs CRC32C.
        "google-crc32c>=1.5",
        # The generate pre-flight: checks a COCO file's syntax and finds its array entries' byte
        # ranges in C without building Python objects (17x faster than json.loads on SARDet, no
        # memory beyond the file), so workers parse pieces in parallel; without it, the whole-file read.
        "msgspec>=0.18",
        # The reports' text (the dataset card, stats.md) is rendered from template files over a model
        # of their values: the words stay apart from the code that computes the numbers. Well kept
        # (Pallets), pure Python with MarkupSafe, and already in the test install through dask.
        "jinja2>=3.1",
    ],
    extras_require={
        # gs:// for the pipelines (Beam's GCS filesystem), for infer's fsspec store, and Dataflow.
        "gcp": [f"apache-beam[gcp]=={BEAM_VERSION}", "gcsfs>=2023.1"],
        # The tests cover the Dataflow and gs:// paths too (Flex Template metadata, object stores).
        # (datasets: the dataset card test loads OUT the way Hugging Face users do)
        # (ruff, pyright, mypy: CI's static checks of the library, .ci/static_checks.py;
        #  dask, distributed: .ci/engine_checks.sh runs the pipelines on a local Dask cluster)
        "test": ["pytest>=7", "pytest-xdist>=3", "hypothesis>=6", f"apache-beam[gcp]=={BEAM_VERSION}", "gcsfs>=2023.1", "datasets>=3",
                 "ruff>=0.6", "pyright>=1.1.380", "mypy>=1.11", "dask[distributed]==2026.8.0", "distributed==2026.8.0"],
        # Beam's DaskRunner on a dask.distributed cluster (--runner=DaskRunner), pinned to the versions
        # the engine checks ran with: its silent failures depend on them (docs/runners.md)
        "dask": ["dask[distributed]==2026.8.0", "distributed==2026.8.0"],
        "inference": ["vllm>=0.8", "torch>=2.5", "transformers>=4.45"],
    },
    entry_points={"console_scripts": ["sarchat=sarchat.beam_pipelines.cli:main"]},
)
