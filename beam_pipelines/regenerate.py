"""`sarchat regenerate`: idempotent, versioned generation for scheduled runs.

    sarchat regenerate --input ROOT --output-base BASE [generate flags] [any Beam pipeline option]

Takes the flags of `sarchat generate` except --output. Every run resolves the inputs and the
configuration to the dataset version (`dataset_version` of the manifest: sha256 over the generator
version, the template banks, the flags that shape the dataset and the annotation files' sha256; a
template edit alone is a new version) and owns one folder:

    BASE/v-<dataset_version>/      a published version: the layout of `sarchat generate --output`
    BASE/LATEST                    one line: the name of the newest published version (v-<hash>)
    BASE/.tmp-<hash>-<unique>/     a run in progress, or the remains of one that died

- Up to date: when BASE/v-<hash>/manifest.json exists, names the same dataset_version and every file it
  lists is present with its size, the run prints so and exits 0 without starting a pipeline (and
  points LATEST at that version if it pointed elsewhere: LATEST names the version of the inputs as
  they are now).
- Otherwise the pipeline writes into BASE/.tmp-<hash>-<unique>/ (manifest.json last, as always),
  then its last step publishes: on a local disk one atomic rename of the folder to BASE/v-<hash>/;
  on an object store (gs://: rename = copy + delete, object by object) every file but
  manifest.json first, then manifest.json. LATEST is rewritten after that.
  A run that dies at any point leaves no folder that looks complete: a version is complete only
  with its manifest, which arrives last. The next run starts afresh (a half-moved BASE/v-<hash>/
  without manifest is removed before publishing); temporary folders of dead runs are listed in the
  log and may be deleted when no run is in progress.
- Publication is a step of the pipeline itself, so it also happens when the job is launched and
  left running (a Flex Template launch, --no_wait_until_finish), e.g. by Cloud Scheduler.
- Two concurrent runs with the same inputs produce identical files; the second to finish finds the
  version complete and only removes its temporary folder.

All file access goes through sarchat.transforms.fileio (local paths, gs://, ...).
"""
import os
import signal
import sys
import time
import uuid
from typing import NamedTuple, Optional

from sarchat.beam_pipelines import flags, generate
from sarchat.beam_pipelines.beam_options import launch, make_pipeline
from sarchat.transforms import dataset_files, fileio
from sarchat.transforms.errors import DatasetError, OutputError, RunFailed

LATEST = "LATEST"
MANIFEST = "manifest.json"
VERSION_PREFIX = "v-"
TMP_PREFIX = ".tmp-"
# Fault injection for the crash tests: the process kills itself (SIGKILL) at the named point.
CRASH_ENV = "SARCHAT_REGENERATE_CRASH_AT"
# Beam is imported inside the functions (fileio too loads it on first use) and PublishFn lives in
# regenerate_publish.py: `sarchat regenerate --help` and a bad flag answer without loading Beam.


def build_parser():
    p = flags.command_parser("sarchat regenerate", __doc__)
    p.add_argument("--input", required=True, help="dataset root (local path or gs://): Annotations/<split>.json, JPEGImages/<split>/")
    p.add_argument("--output-base", "--output_base", required=True, type=flags.output_folder("--output-base"),
                   help="folder holding the versions v-<hash>/, LATEST and temporary folders (local path or gs://)")
    generate.add_generation_arguments(p)
    flags.add_progress_flag(p)
    return p


def version_name(dataset_version: str) -> str:
    return f"{VERSION_PREFIX}{dataset_version}"


def _checkpoint(name):
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def read_manifest(folder):
    """The folder's manifest.json, None when there is none (a version not yet or half published).
    One that is there but unreadable, not JSON or not a manifest object is a DatasetError: such a
    folder is neither ours to delete nor complete, so the run stops and says which file it is."""
    if not fileio.exists(fileio.join_path(folder, MANIFEST)):
        return None
    try:
        return dataset_files.read_manifest(folder)
    except DatasetError as exc:
        raise DatasetError(f"{exc}; nothing was changed: remove {folder} to let regenerate rebuild it") from None


def is_complete(folder, expected_hash) -> bool:
    """A published version: its manifest names the expected dataset version and every listed file is
    there, with its size."""
    manifest = read_manifest(folder)
    if not isinstance(manifest, dict) or manifest.get("dataset_version") != expected_hash:
        return False
    present = fileio.list_files(folder)
    return all(present.get(f["path"]) == f.get("bytes") for f in manifest.get("files", []))


def check_latest(base):
    """OutputError when BASE/LATEST is a folder: it must be a one-line file, and rewriting it would
    fail after the whole pipeline ran (or, worse, replace someone's folder)."""
    path = fileio.join_path(base, LATEST)
    if fileio.is_local(path) and os.path.isdir(path):
        raise OutputError(f"{path} is a folder; it should be the one-line file naming the newest version "
                          f"({VERSION_PREFIX}<hash>): move it away and run again")


def read_latest(base):
    path = fileio.join_path(base, LATEST)
    try:
        if not fileio.exists(path):
            return None
        with fileio.open_read(path) as f:
            return f.read().decode("utf-8").strip() or None
    except OSError:
        return None


def write_latest(base, name):
    """Point BASE/LATEST at version `name`, atomically (fileio.write_text: a local temporary renamed;
    an object store writes an object whole on close, so readers see the old or the new content)."""
    check_latest(base)
    fileio.write_text(fileio.join_path(base, LATEST), name + "\n")


def move_tree(src, dst, atomic_rename=None):
    """Move every file of folder src to folder dst, manifest.json last.

    atomic_rename (default: local paths): one rename of the folder. Otherwise file by file through
    fileio.rename (on GCS a copy then a delete per object), the manifest after all the rest.
    """
    if atomic_rename is None:
        atomic_rename = fileio.is_local(src) and fileio.is_local(dst)
    if atomic_rename:
        os.rename(src, dst)
        return
    files = sorted(fileio.list_files(src))
    if MANIFEST not in files:
        raise IOError(f"{src} has no {MANIFEST}; refusing to publish an incomplete run")
    rest = [f for f in files if f != MANIFEST]
    for batch_start in range(0, len(rest), 100):
        batch = rest[batch_start:batch_start + 100]
        fileio.rename([fileio.join_path(src, f) for f in batch], [fileio.join_path(dst, f) for f in batch])
    _checkpoint("before_manifest_move")
    fileio.rename([fileio.join_path(src, MANIFEST)], [fileio.join_path(dst, MANIFEST)])
    fileio.delete_tree(src)


def publish(base, tmp, name, expected_hash, atomic_rename=None):
    """Make the finished run in `tmp` the version `name` under `base`, then point LATEST at it.

    Returns "published" or "already published" (another run with the same inputs got there first).
    """
    final = fileio.join_path(base, name)
    if is_complete(final, expected_hash):
        fileio.delete_tree(tmp)
        status = "already published"
    else:
        if not is_complete(tmp, expected_hash):
            raise IOError(f"{tmp} is not a complete run (manifest missing or files differ); not publishing")
        # the remains of a publication that died half-way (no manifest). On object stores the
        # "folder" is a prefix that exists() does not see, so delete_tree always lists and deletes.
        fileio.delete_tree(final)
        move_tree(tmp, final, atomic_rename)
        status = "published"
    _checkpoint("before_latest")
    write_latest(base, name)
    return status


def stale_tmp_folders(base):
    """Temporary folders under base (runs in progress or dead ones)."""
    root = base.rstrip("/") + "/"
    names = {path[len(root):].split("/", 1)[0] for path in fileio.match(root + TMP_PREFIX + "*/**", quiet=True)
             if path.startswith(root)}
    return sorted(root + n for n in names)


class Regenerated(NamedTuple):
    """What `regenerate` did: the dataset version and its folder BASE/v-<version>, its manifest
    (None when the job was only submitted: it writes `tmp` and publishes it when it ends), and
    whether the version was complete already (no pipeline ran)."""
    version: str
    folder: str
    manifest: Optional[dict]
    up_to_date: bool
    tmp: str = ""


def regenerate(config: generate.GenerateConfig, test=None) -> Regenerated:
    """The regenerate stage: the dataset of `config` published as config.output_base/v-<dataset
    version> unless it is there already, LATEST pointing at it. `test(published_pcoll)` may add
    assertions inside the pipeline."""
    import apache_beam as beam  # after the flags: a bad flag answers without loading Beam

    from sarchat.beam_pipelines.regenerate_publish import PublishFn

    base = config.output_base.rstrip("/") or config.output_base
    check_latest(base)
    formats, splits, manifest_base = generate.prepare(config)  # UsageError: exit 2
    fileio.check_no_overlap([("the input folder (--input)", config.input)]
                            + [(f"the {s.split} annotations", s.annotations) for s in splits], base, "--output-base")
    h = manifest_base["dataset_version"]
    name = version_name(h)
    final = fileio.join_path(base, name)
    if is_complete(final, h):
        if read_latest(base) != name:
            write_latest(base, name)
        return Regenerated(h, final, read_manifest(final), up_to_date=True)
    leftovers = stale_tmp_folders(base)
    if leftovers:
        print(f"sarchat regenerate: note: {len(leftovers)} temporary folder(s) of other runs under {base} "
              f"(in progress or interrupted; safe to delete when no run is going): {', '.join(leftovers)}",
              file=sys.stderr)
    tmp = fileio.join_path(base, f"{TMP_PREFIX}{h}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}")
    pipeline = make_pipeline(config.beam_args)
    manifest, _ = generate.build(pipeline, config, tmp, formats, splits, dict(manifest_base, output_version=name))
    published = manifest | "Publish" >> beam.ParDo(PublishFn(base, tmp, name, h))
    if test is not None:
        test(published)
    _, finished = launch(pipeline, generate.progress_of(splits))
    if not finished:
        return Regenerated(h, final, None, up_to_date=False, tmp=tmp)
    written = read_manifest(final)
    if written is None or not is_complete(final, h):
        raise RunFailed(f"the pipeline finished but {final} is not complete")
    return Regenerated(h, final, written, up_to_date=False)


def run(argv=None, test=None):
    """`sarchat regenerate`: the stage, then what it did on stdout."""
    config = flags.parse_config(build_parser(), argv, generate.GenerateConfig, beam=True)
    started = time.time()
    done = regenerate(config, test)
    base = config.output_base.rstrip("/") or config.output_base
    latest = fileio.join_path(base, LATEST)
    if done.up_to_date:
        print(f"sarchat regenerate: up to date: {done.folder} is complete (dataset version {done.version}); "
              f"nothing to do. {latest} -> {version_name(done.version)}")
    elif done.manifest is None:
        print(f"sarchat regenerate: submitted; the job writes {done.tmp}, publishes it as {done.folder} and then "
              f"updates {latest}")
    else:
        print(generate.summary_table(done.manifest, time.time() - started))
        print(f"sarchat regenerate: published {done.folder}; {latest} -> {read_latest(base)}")
    return 0


if __name__ == "__main__":
    sys.exit(run())
