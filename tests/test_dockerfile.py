"""The Dockerfiles, constraints.txt, setup.py, the Flex Template files and docs/dataflow.md agree."""
import ast
import glob
import json
import os
import re
import subprocess
import sys
import types

import apache_beam
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from sarchat.beam_pipelines.cli import SUBCOMMANDS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read(*parts):
    with open(os.path.join(REPO, *parts), encoding="utf-8") as f:
        return f.read()


def instructions(path):
    """[(stage index, INSTRUCTION, argument text)], continuation lines joined, comments dropped."""
    lines, buf = [], ""
    for raw in _read(path).splitlines():
        if raw.lstrip().startswith("#") and not buf:
            continue
        if raw.lstrip().startswith("#"):
            continue
        if raw.rstrip().endswith("\\"):
            buf += raw.rstrip()[:-1] + " "
            continue
        buf += raw
        if buf.strip():
            lines.append(buf.strip())
        buf = ""
    out, stage = [], -1
    for line in lines:
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            stage += 1
        out.append((stage, word, rest.strip()))
    return out


def args_of(ins):
    """ARG defaults (the global ones before the first FROM and the per-stage ones)."""
    out = {}
    for _, word, rest in ins:
        if word == "ARG" and "=" in rest:
            k, v = rest.split("=", 1)
            out.setdefault(k.strip(), v.strip())
    return out


def expand(text, values):
    return re.sub(r"\$\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), text)


def setup_info():
    tree = ast.parse(_read("setup.py"))
    beam_version = None
    setup_kwargs = None
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "BEAM_VERSION" for t in node.targets):
            beam_version = node.value.value
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setup":
            setup_kwargs = {kw.arg: kw.value for kw in node.keywords}

    def literal(node):
        if isinstance(node, ast.JoinedStr):  # f"apache-beam[gcp]=={BEAM_VERSION}"
            return "".join(v.value if isinstance(v, ast.Constant) else beam_version for v in node.values)
        if isinstance(node, ast.List):
            return [literal(e) for e in node.elts]
        if isinstance(node, ast.Dict):
            return {literal(k): literal(v) for k, v in zip(node.keys, node.values)}
        return ast.literal_eval(node)

    return beam_version, {k: literal(v) for k, v in setup_kwargs.items() if k in (
        "install_requires", "extras_require", "entry_points", "packages_include", "package_data")}


def constraints():
    pins = {}
    for line in _read("constraints.txt").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        assert sep and version, f"constraints.txt: {line!r} is not an exact pin"
        key = canonicalize_name(name)
        assert key not in pins, f"constraints.txt pins {name} twice"
        pins[key] = version.strip()
    return pins


DOCKER = instructions("Dockerfile")
GPU = instructions("Dockerfile.gpu")


def test_beam_version_is_the_same_everywhere():
    beam_version, info = setup_info()
    assert beam_version == apache_beam.__version__ == "2.77.0"
    assert f"apache-beam=={beam_version}" in info["install_requires"]
    assert f"apache-beam[gcp]=={beam_version}" in info["extras_require"]["gcp"]
    assert constraints()["apache-beam"] == beam_version
    for ins in (DOCKER, GPU):
        values = args_of(ins)
        assert values["BEAM_VERSION"] == beam_version
        sdk_images = [expand(rest, values) for _, w, rest in ins if w in ("FROM",) and "beam_python" in rest]
        assert sdk_images and all(f"apache/beam_python{values['PYTHON_VERSION']}_sdk:{beam_version}" in s
                                  for s in sdk_images)
    assert f"{sys.version_info.major}.{sys.version_info.minor}" == args_of(DOCKER)["PYTHON_VERSION"] == "3.11"
    assert f"beam_python3.11_sdk:{beam_version}" in _read("docs", "dataflow.md")


def test_entry_points():
    _, info = setup_info()
    assert info["entry_points"]["console_scripts"] == ["sarchat=sarchat.beam_pipelines.cli:main"]
    last_stage = max(s for s, _, _ in DOCKER)
    entry = {s: rest for s, w, rest in DOCKER if w == "ENTRYPOINT"}
    assert json.loads(entry[last_stage]) == ["/opt/apache/beam/boot"], "the default target is the worker image"
    cli_stage = next(s for s, w, rest in DOCKER if w == "FROM" and rest.endswith(" AS cli"))
    assert json.loads(entry[cli_stage]) == ["sarchat"]
    assert any(s == cli_stage and w == "USER" and rest != "root" for s, w, rest in DOCKER), "cli runs as non-root"
    assert [json.loads(r) for _, w, r in GPU if w == "ENTRYPOINT"] == [["/opt/apache/beam/boot"]]
    gpu_values = args_of(GPU)
    assert any(w == "COPY" and expand(r, gpu_values).startswith("--from=beam-sdk /opt/apache/beam /opt/apache/beam")
               for _, w, r in GPU)
    assert any(w == "FROM" and "beam_python" in r and r.endswith("AS beam-sdk") for _, w, r in GPU)
    assert any(w == "FROM" and r.startswith("${CUDA_IMAGE}") for _, w, r in GPU)
    assert gpu_values["CUDA_IMAGE"].startswith("nvidia/cuda:")


def test_flex_template_launcher():
    values = args_of(DOCKER)
    assert values["LAUNCHER_IMAGE"].startswith(
        "gcr.io/dataflow-templates-base/python%s-template-launcher-base" % values["PYTHON_VERSION"].replace(".", ""))
    last = max(s for s, _, _ in DOCKER)
    final = [(w, r) for s, w, r in DOCKER if s == last]
    assert ("COPY", "--from=template-launcher /opt/google/dataflow/python_template_launcher "
                    "/opt/google/dataflow/python_template_launcher") in final
    envs = dict(r.split("=", 1) for w, r in final if w == "ENV")
    main_py = envs["FLEX_TEMPLATE_PYTHON_PY_FILE"]
    assert "FLEX_TEMPLATE_PYTHON_SETUP_FILE" not in envs  # the package is in the image (see docs)
    assert envs["SARCHAT_PIPELINE"] == "${PIPELINE}" and values["PIPELINE"] in SUBCOMMANDS
    # the launcher's main file, as the Dockerfile writes it, dispatches to the named pipeline
    run = next(r for w, r in final if w == "RUN" and main_py in r)
    lines = re.findall(r"'([^']*)'", run.split("printf", 1)[1].split(">", 1)[0])[1:]
    script = "\n".join(lines) + "\n"
    env = dict(os.environ, SARCHAT_PIPELINE="generate")
    proc = subprocess.run([sys.executable, "-c", script, "--help"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "sarchat generate" in proc.stdout
    docs = _read("docs", "dataflow.md")
    for word in ("FLEX_TEMPLATE_PYTHON_PY_FILE", "FLEX_TEMPLATE_PYTHON_SETUP_FILE", "python_template_launcher",
                 "python311-template-launcher-base", "/opt/apache/beam/boot", "--setup_file",
                 "--sdk_container_image", "RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT"):
        assert word in docs, word
    for pipeline in re.findall(r"for p in ([a-z ]+); do", docs)[0].split():
        assert pipeline in SUBCOMMANDS and os.path.exists(os.path.join(REPO, "beam_pipelines", "flex_templates",
                                                                        f"{pipeline}.json"))


def test_images_install_the_whole_package_with_the_constraints():
    _, info = setup_info()
    for ins in (DOCKER, GPU):
        copied = {r.split()[0].rstrip("/") for _, w, r in ins if w == "COPY" and not r.startswith("--from")}
        assert {"sarchat", "beam_pipelines", "transforms", "templates", "inference", "report", "synthetic"} <= copied
        assert any("constraints.txt" in r and "setup.py" in r for _, w, r in ins if w == "COPY")
        runs = " ".join(r for _, w, r in ins if w == "RUN")
        assert "pip check" in runs and "sarchat --help" in runs
        # the images run on Dataflow and read gs://: they install the gcp extra
        assert re.search(r"pip install -c (/tmp/constraints-gpu\.txt|constraints\.txt)\b.* '\.\[gcp\]'( |$)", runs)
    assert set(info["package_data"]["sarchat.beam_pipelines"]) == {"flex_templates/*.json"}
    assert glob.glob(os.path.join(REPO, "beam_pipelines", "flex_templates", "*.json"))


def test_constraints_pin_every_requirement_compatibly():
    _, info = setup_info()
    pins = constraints()
    for raw in info["install_requires"] + info["extras_require"]["test"] + info["extras_require"]["gcp"]:
        req = Requirement(raw)
        key = canonicalize_name(req.name)
        assert key in pins, f"constraints.txt does not pin {req.name}"
        assert req.specifier.contains(pins[key], prereleases=True), f"{req.name}=={pins[key]} violates {req}"
    for extra in ("gcp",):  # apache-beam[gcp]'s own pins must be in the set too
        assert "google-cloud-storage" in pins and "gcsfs" in pins, extra


def test_gpu_pins():
    _, info = setup_info()
    values = args_of(GPU)
    for name in ("VLLM_VERSION", "TORCH_VERSION", "NUMPY_VERSION"):
        assert re.fullmatch(r"\d+(\.\d+)+", values[name]), name
    wanted = {Requirement(r).name: Requirement(r) for r in info["extras_require"]["inference"]}
    assert wanted["vllm"].specifier.contains(values["VLLM_VERSION"])
    assert wanted["torch"].specifier.contains(values["TORCH_VERSION"])
    numpy_req = next(Requirement(r) for r in info["install_requires"] if r.startswith("numpy"))
    assert numpy_req.specifier.contains(values["NUMPY_VERSION"])
    runs = " ".join(r for _, w, r in GPU if w == "RUN")
    assert "grep -v '^numpy==' constraints.txt > /tmp/constraints-gpu.txt" in runs
    for name in ("numpy==${NUMPY_VERSION}", "torch==${TORCH_VERSION}", "vllm==${VLLM_VERSION}"):
        assert name in runs
    envs = " ".join(r for _, w, r in GPU if w == "ENV")
    assert "RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT=1" in envs
    docs = _read("docs", "dataflow.md")
    for name in ("VLLM_VERSION", "TORCH_VERSION", "NUMPY_VERSION"):
        assert values[name] in docs


def _launch_params():
    from google.cloud.dataflow_v1beta3.types import LaunchFlexTemplateRequest

    return LaunchFlexTemplateRequest


def _template_params(name):
    meta = json.loads(_read("beam_pipelines", "flex_templates", f"{name}.json"))
    return {p["name"] for p in meta["parameters"]}


def test_docs_commands_and_scheduler_body():
    docs = _read("docs", "dataflow.md")
    for needle in ("gcloud dataflow flex-template build", "--sdk-language PYTHON", "--metadata-file",
                   "gcloud dataflow flex-template run", "--template-file-gcs-location",
                   "gcloud scheduler jobs create http", "--oauth-service-account-email",
                   "--oauth-token-scope https://www.googleapis.com/auth/cloud-platform",
                   "flexTemplates:launch", "DataflowStartFlexTemplateOperator", "gcloud builds submit",
                   "docker build", "docker push"):
        assert needle in docs, needle
    for path in re.findall(r"--metadata-file (\S+)", docs):
        path = path.replace("$p", "generate")
        assert os.path.exists(os.path.join(REPO, path)), path
    (body_text,) = re.findall(r"```json\n(.*?)```", docs, re.S)
    request = _launch_params().from_json(body_text)  # strict: misspelt fields fail
    params = request.launch_parameter.parameters
    template = os.path.basename(request.launch_parameter.container_spec_gcs_path)[:-len(".json")]
    assert set(params) <= _template_params(template)
    assert request.launch_parameter.environment.sdk_container_image
    # gcloud --parameters names are template parameters too
    for group in re.findall(r"--parameters (\S+)", docs):
        for item in re.split(r"[,~]", group.lstrip("^~^")):  # noqa: B005 (strips the characters ^ and ~)
            key = item.split("=", 1)[0]
            if "=" in item and key not in ("sdk_container_image",):
                assert key in _template_params("generate") , key


def test_airflow_dag_bodies_are_valid_launch_requests(monkeypatch):
    """Import the example DAG against stand-ins for Airflow and check every launch body."""
    made = []

    class Op:
        def __init__(self, **kw):
            made.append(kw)

        def __rshift__(self, other):
            return other

        def __rrshift__(self, other):
            return self

    class Dag:
        def __init__(self, **kw):
            self.kw = kw

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    def task(fn):
        return lambda *a, **k: Op(task_id=fn.__name__)

    class Variable:
        @staticmethod
        def get(name, default=None):
            return default

    stubs = {
        "airflow": types.ModuleType("airflow"),
        "airflow.sdk": types.ModuleType("airflow.sdk"),
        "airflow.providers": types.ModuleType("airflow.providers"),
        "airflow.providers.google": types.ModuleType("airflow.providers.google"),
        "airflow.providers.google.cloud": types.ModuleType("airflow.providers.google.cloud"),
        "airflow.providers.google.cloud.hooks": types.ModuleType("airflow.providers.google.cloud.hooks"),
        "airflow.providers.google.cloud.hooks.gcs": types.ModuleType("airflow.providers.google.cloud.hooks.gcs"),
        "airflow.providers.google.cloud.operators": types.ModuleType("airflow.providers.google.cloud.operators"),
        "airflow.providers.google.cloud.operators.dataflow":
            types.ModuleType("airflow.providers.google.cloud.operators.dataflow"),
    }
    stubs["airflow.sdk"].DAG, stubs["airflow.sdk"].task, stubs["airflow.sdk"].Variable = Dag, task, Variable
    stubs["airflow.providers.google.cloud.hooks.gcs"].GCSHook = object
    stubs["airflow.providers.google.cloud.operators.dataflow"].DataflowStartFlexTemplateOperator = Op
    for name, module in stubs.items():
        monkeypatch.setitem(sys.modules, name, module)
    source = _read("docs", "airflow_sarchat_dag.py")
    exec(compile(source, "airflow_sarchat_dag.py", "exec"), {"__name__": "airflow_sarchat_dag"})
    launches = [kw for kw in made if "body" in kw]
    assert [kw["task_id"] for kw in launches] == ["regenerate", "stats"]
    for kw in launches:
        assert kw["location"] and kw["project_id"] and kw["wait_until_finished"] is True
        request = _launch_params().from_json(json.dumps(kw["body"]))
        template = os.path.basename(request.launch_parameter.container_spec_gcs_path)[:-len(".json")]
        assert template == kw["task_id"]
        assert set(request.launch_parameter.parameters) <= _template_params(template)
        assert request.launch_parameter.environment.sdk_container_image


def test_cli_lists_regenerate():
    from sarchat.beam_pipelines import cli

    assert cli.SUBCOMMANDS["regenerate"][0] == "sarchat.beam_pipelines.regenerate"
    assert "regenerate" in cli.usage()


@pytest.mark.parametrize("path", ["Dockerfile", "Dockerfile.gpu"])
def test_dockerfile_parses(path):
    ins = instructions(path)
    known = {"FROM", "ARG", "ENV", "RUN", "COPY", "WORKDIR", "USER", "ENTRYPOINT", "CMD"}
    assert {w for _, w, _ in ins} <= known
    assert ins[0][1] in ("ARG", "FROM")
    for _, w, rest in ins:
        if w in ("ENTRYPOINT", "CMD"):
            json.loads(rest)  # exec form
