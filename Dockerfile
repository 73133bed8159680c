# SARChat-Bench images for Dataflow (see docs/dataflow.md).
#
# Default target (`docker build -t IMAGE .`): the custom Beam SDK container for Dataflow workers
# (--sdk_container_image=IMAGE) that is also a Flex Template launcher image (gcloud dataflow
# flex-template build --image IMAGE). Build one per pipeline with --build-arg PIPELINE=generate,
# regenerate (the default), stats or score: only the launcher's entry point differs.
# Target `cli` (`docker build --target cli -t IMAGE-cli .`): the `sarchat` command as a non-root user,
# for running a stage in a container outside Dataflow (docker run IMAGE-cli generate --input ...).
# The GPU worker image for the vLLM stage is Dockerfile.gpu.
#
# Versions: BEAM_VERSION must equal setup.py's BEAM_VERSION and the apache-beam pin in
# constraints.txt (tests/test_dockerfile.py checks all three), or the job's pickled graph and the
# worker's SDK disagree.

ARG BEAM_VERSION=2.77.0
ARG PYTHON_VERSION=3.11
# The Flex Template launcher binary comes from Google's launcher base image; pin a dated tag or a
# digest (gcloud artifacts docker images list gcr.io/dataflow-templates-base) for reproducible builds.
ARG LAUNCHER_IMAGE=gcr.io/dataflow-templates-base/python311-template-launcher-base:latest

FROM ${LAUNCHER_IMAGE} AS template-launcher

FROM apache/beam_python${PYTHON_VERSION}_sdk:${BEAM_VERSION} AS base
ARG BEAM_VERSION
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /opt/sarchat
COPY constraints.txt setup.py ./
COPY beam_pipelines/ beam_pipelines/
COPY transforms/ transforms/
COPY templates/ templates/
COPY inference/ inference/
COPY report/ report/
COPY synthetic/ synthetic/
COPY sarchat/ sarchat/
# Every dependency at the version constraints.txt pins (the set the tests ran with), then checks.
RUN pip install -c constraints.txt '.[gcp]' \
    && pip check \
    && python -c "import apache_beam, sys; v = apache_beam.__version__; sys.exit(0 if v == '${BEAM_VERSION}' else 'apache-beam ' + v + ' != ${BEAM_VERSION}')" \
    && sarchat --help > /dev/null

# ---- `sarchat` CLI, non-root ---------------------------------------------------------------------
FROM base AS cli
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin sarchat
USER sarchat
WORKDIR /home/sarchat
ENTRYPOINT ["sarchat"]
CMD ["--help"]

# ---- Dataflow worker + Flex Template launcher (default target) ----------------------------------
# Runs as root: Beam's boot installs any staged artifacts (--setup_file, --requirements_file,
# --extra_package) into the system site-packages and uses the root-owned volumes Dataflow mounts,
# so the SDK base image does not support another user here.
FROM base AS dataflow
COPY --from=template-launcher /opt/google/dataflow/python_template_launcher /opt/google/dataflow/python_template_launcher
ARG PIPELINE=regenerate
ENV SARCHAT_PIPELINE=${PIPELINE}
# The launcher runs `python $FLEX_TEMPLATE_PYTHON_PY_FILE --param=value ...` with the template's
# parameters and Dataflow's options (--runner, --project, --region, --temp_location,
# --template_location, --sdk_container_image, ...). The package is installed in this image, which is
# also the workers' image, so FLEX_TEMPLATE_PYTHON_SETUP_FILE stays unset: setting it
# (=/opt/sarchat/setup.py) makes the launcher stage an sdist that every worker reinstalls at start.
RUN mkdir -p /template \
    && printf '%s\n' \
        'import os, sys' \
        'from sarchat.beam_pipelines.cli import main' \
        'sys.exit(main([os.environ.get("SARCHAT_PIPELINE", "regenerate"), *sys.argv[1:]]))' \
        > /template/main.py \
    && test -x /opt/google/dataflow/python_template_launcher \
    && python /template/main.py --help > /dev/null
ENV FLEX_TEMPLATE_PYTHON_PY_FILE=/template/main.py
# Dataflow starts SDK workers through Beam's boot binary; the launcher VM overrides the entry point.
ENTRYPOINT ["/opt/apache/beam/boot"]
