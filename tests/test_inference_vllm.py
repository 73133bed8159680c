"""The vllm backend against an injected fake engine with vllm.LLM.chat's real signature."""
import base64
import inspect
import json
import os

import pyarrow.parquet as pq
import pytest

from sarchat.transforms.adapters import get_adapter
from sarchat.inference.backends.vllm_backend import VllmBackend
from sarchat.inference.run import execute, parse_config
from tests.fixture_dataset import write_fixture_dataset
from sarchat.transforms.errors import RunFailed
from sarchat.transforms.schema import PREDICTION_SCHEMA


from tests.fake_vllm import REAL_CHAT_PARAMS, FakeLLM, FakeSamplingParams  # noqa: E402


def test_fake_honours_the_real_signature():
    assert list(inspect.signature(FakeLLM.chat).parameters) == REAL_CHAT_PARAMS


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("vllmdata")
    generated, image_root, rows = write_fixture_dataset(str(root), n_images=4, seed=3)
    return generated, image_root, rows["test"]


def _cfg(generated, out, *extra):
    return parse_config(["--dataset", generated, "--output", str(out), "--backend", "vllm",
                         "--model", "Qwen/Qwen2-VL-7B-Instruct", "--no-progress", *extra])


def test_messages_image_parts_and_sampling(dataset, tmp_path):
    generated, image_root, rows = dataset
    cfg = _cfg(generated, tmp_path, "--batch-size", "5", "--seed", "7", "--max-tokens", "64")
    adapter = get_adapter("qwen2-vl")
    engine = FakeLLM()
    backend = VllmBackend(cfg, adapter, engine=engine, sampling_params_cls=FakeSamplingParams)
    assert execute(cfg, backend=backend) == 0

    by_id = {r["id"]: r for r in rows}
    seen = []
    for call in engine.calls:
        assert call["use_tqdm"] is False
        sp = call["sampling_params"]
        assert (sp.temperature, sp.seed, sp.max_tokens, sp.skip_special_tokens) == (0.0, 7, 64, False)
        assert len(call["messages"]) <= 5
        seen.extend(call["messages"])
    # the runner feeds samples grouped by image: (image_path, id) order
    expected = []
    for row in sorted(rows, key=lambda r: (r["image_path"], r["id"])):
        with open(os.path.join(image_root, row["image_path"]), "rb") as fh:
            url = "data:image/png;base64," + base64.b64encode(fh.read()).decode()
        expected.append([{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": url}},
            {"type": "text", "text": adapter.user_text(row)},
        ]}])
    assert seen == expected
    texts = [conv[0]["content"][1]["text"] for conv in seen]
    assert not any("{<" in t or "<image>" in t for t in texts)  # pixel boxes rewritten, no tag
    assert any("<|box_start|>" in t for t in texts)

    table = pq.read_table(tmp_path / "predictions.parquet")
    assert table.schema.equals(PREDICTION_SCHEMA)
    preds = table.to_pylist()
    assert sorted(p["id"] for p in preds) == sorted(by_id)
    assert all(p["prediction"].endswith("<|box_end|>") for p in preds)  # end marker cleaned
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["adapter"] == "qwen2-vl" and manifest["box_format"] == "qwen2-vl"
    assert manifest["sampling"]["temperature"] == 0.0 and manifest["sampling"]["seed"] == 7
    assert manifest["predictions"]["rows"] == len(rows)


def test_engine_kwargs(dataset):
    cfg = _cfg(dataset[0], "unused", "--engine-arg", "max_num_seqs=64", "--engine-arg", "enforce_eager=true")
    kw = VllmBackend(cfg, get_adapter("deepseek-vl2"), engine=FakeLLM()).engine_kwargs()
    assert kw["limit_mm_per_prompt"] == {"image": 1}
    assert kw["seed"] == 0 and kw["model"] == "Qwen/Qwen2-VL-7B-Instruct"
    assert kw["hf_overrides"] == {"architectures": ["DeepseekVLV2ForCausalLM"]}
    assert kw["max_num_seqs"] == 64 and kw["enforce_eager"] is True


def test_failures_are_isolated_and_retried(dataset, tmp_path):
    generated, image_root, rows = dataset
    # a copy of the image tree with one image missing and one corrupt
    import shutil

    images = tmp_path / "images"
    shutil.copytree(image_root, images)
    paths = sorted({r["image_path"] for r in rows})
    os.remove(images / paths[0])
    (images / paths[1]).write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    poison_b64 = base64.b64encode((images / paths[2]).read_bytes()).decode()
    poisoned = {r["id"] for r in rows if r["image_path"] == paths[2]}
    out = tmp_path / "out"
    cfg = _cfg(generated, out, "--image-root", str(images), "--adapter", "deepseek-vl2")
    engine = FakeLLM(answer=lambda conv: "ok", poison=poison_b64[100:160])
    backend = VllmBackend(cfg, get_adapter("deepseek-vl2"), engine=engine, sampling_params_cls=FakeSamplingParams)
    with pytest.raises(RunFailed, match=r"selected samples have no prediction"):
        execute(cfg, backend=backend)
    assert all(c["chat_template"] == get_adapter("deepseek-vl2").chat_template for c in engine.calls)
    preds = {p["id"]: p for p in pq.read_table(out / "predictions.parquet").to_pylist()}
    assert len(preds) == len(rows)
    failed = {i for i, p in preds.items() if p["error"]}
    bad_images = {r["id"] for r in rows if r["image_path"] in paths[:2]}
    assert bad_images <= failed
    assert any("missing image" in preds[i]["error"] for i in bad_images)
    assert any("corrupt image" in preds[i]["error"] for i in bad_images)
    assert all("engine rejected" in preds[i]["error"] for i in poisoned)
    # the engine failure was bisected down to the poisoned prompts: the rest of the batch went through
    assert failed == bad_images | poisoned
    assert sum(1 for p in preds.values() if p["prediction"] == "ok") == len(rows) - len(failed)

    # fix everything and rerun: only the failures are retried
    shutil.rmtree(images)
    shutil.copytree(image_root, images)
    engine2 = FakeLLM(answer=lambda conv: "fixed")
    backend2 = VllmBackend(cfg, get_adapter("deepseek-vl2"), engine=engine2, sampling_params_cls=FakeSamplingParams)
    execute(cfg, backend=backend2)
    assert sum(len(c["messages"]) for c in engine2.calls) == len(failed)
    preds = {p["id"]: p for p in pq.read_table(out / "predictions.parquet").to_pylist()}
    assert len(preds) == len(rows) and not any(p["error"] for p in preds.values())
    assert {i for i, p in preds.items() if p["prediction"] == "fixed"} == failed


def test_next_batch_is_prepared_while_the_engine_answers(dataset, tmp_path):
    """While the engine answers batch k, batch k+1's images are read (the runner's prefetch), and
    each image is read once however many dialogues share it; the stored answers are the same, in
    the same order, as without any overlap."""
    import threading

    from sarchat.inference.dataset import read_image_bytes

    generated, image_root, rows = dataset
    bs = 3
    ordered = sorted(rows, key=lambda r: (r["image_path"], r["id"]))
    batches = [ordered[i:i + bs] for i in range(0, len(ordered), bs)]
    seen_before = [set(r["image_path"] for b in batches[:k + 1] for r in b) for k in range(len(batches))]
    # per call k: images batch k+1 needs that no earlier batch read
    new_next = [{r["image_path"] for r in batches[k + 1]} - seen_before[k] for k in range(len(batches) - 1)]
    assert sum(1 for n in new_next if n) >= 2  # the fixture gives the test something to see

    reads = []
    read_lock = threading.Lock()
    read_event = threading.Condition(read_lock)

    def read(location):
        data = read_image_bytes(location)
        with read_event:
            reads.append(os.path.relpath(location, image_root))
            read_event.notify_all()
        return data

    class WaitingLLM(FakeLLM):
        """Answers batch k once some image only batch k+1 needs has been read: with no overlap
        between preparing and answering, that never happens during the call (the wait gives up)."""

        def __init__(self):
            super().__init__(answer=lambda conv: "answer to " + conv[0]["content"][1]["text"])
            self.overlapped = []

        def chat(self, messages, **kw):
            k = len(self.calls)
            if k < len(new_next) and new_next[k]:
                with read_event:
                    seen = read_event.wait_for(lambda: new_next[k] & set(reads), timeout=30)
                self.overlapped.append(bool(seen))
            return super().chat(messages, **kw)

    cfg = _cfg(generated, tmp_path / "overlap", "--batch-size", str(bs))
    engine = WaitingLLM()
    backend = VllmBackend(cfg, get_adapter("qwen2-vl"), engine=engine, sampling_params_cls=FakeSamplingParams,
                          read_image=read)
    assert execute(cfg, backend=backend) == 0
    assert engine.overlapped and all(engine.overlapped)
    assert sorted(reads) == sorted({r["image_path"] for r in rows})  # once per image

    # the same answers, stored in the runner's order, as a run with one batch (nothing to overlap)
    plain_cfg = _cfg(generated, tmp_path / "plain", "--batch-size", str(len(rows)))
    plain = FakeLLM(answer=engine.answer)
    assert execute(plain_cfg, backend=VllmBackend(plain_cfg, get_adapter("qwen2-vl"), engine=plain,
                                                  sampling_params_cls=FakeSamplingParams)) == 0
    assert len(plain.calls) == 1 and len(engine.calls) == len(batches)
    assert [m for c in engine.calls for m in c["messages"]] == plain.calls[0]["messages"]
    got = pq.read_table(tmp_path / "overlap" / "predictions.parquet").to_pylist()
    want = pq.read_table(tmp_path / "plain" / "predictions.parquet").to_pylist()
    assert [(p["id"], p["prediction"], p["error"]) for p in got] == \
        [(p["id"], p["prediction"], p["error"]) for p in want]
    assert all(p["prediction"].startswith("answer to ") for p in got)
    part = next((tmp_path / "overlap" / "store").glob("*/part-*.jsonl"))
    assert [json.loads(line)["id"] for line in part.read_text().splitlines()] == [r["id"] for r in ordered]


def test_first_batch_is_prepared_while_the_engine_loads(dataset, tmp_path):
    """setup() (vllm.LLM(...) loading the model) sees batch 0's images being read: preparing needs
    no engine. A setup that fails still leaves no trace in the run folder."""
    import threading

    from sarchat.inference.dataset import read_image_bytes
    from sarchat.transforms.errors import SarchatError

    generated, image_root, rows = dataset
    reads = []
    cond = threading.Condition()

    def read(location):
        with cond:
            reads.append(location)
            cond.notify_all()
        return read_image_bytes(location)

    class LoadingBackend(VllmBackend):
        saw_reads = None

        def setup(self):
            with cond:
                self.saw_reads = bool(cond.wait_for(lambda: reads, timeout=30))  # now, not the list later
            if self.engine is None:
                raise SarchatError("the engine cannot start")
            super().setup()

    cfg = _cfg(generated, tmp_path / "run", "--batch-size", "4")
    backend = LoadingBackend(cfg, get_adapter("qwen2-vl"), engine=FakeLLM(), sampling_params_cls=FakeSamplingParams,
                             read_image=read)
    assert execute(cfg, backend=backend) == 0
    assert backend.saw_reads
    assert len(pq.read_table(tmp_path / "run" / "predictions.parquet")) == len(rows)

    failing = LoadingBackend(_cfg(generated, tmp_path / "failed"), get_adapter("qwen2-vl"),
                             sampling_params_cls=FakeSamplingParams, read_image=read)
    with pytest.raises(SarchatError, match="cannot start"):
        execute(failing.config, backend=failing)
    assert not (tmp_path / "failed").exists() or not any((tmp_path / "failed").iterdir())
