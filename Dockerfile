# blastradius on the official Ray image of the Ray version pyproject pins (Python 3.11).
#   docker build -t blastradius:0.1.0 .
# The wheel is built in a first stage; the final image has it installed and nothing of
# the source tree, and runs as the image's non-root user (ray, uid 1000).
ARG RAY_IMAGE=rayproject/ray:2.60.0-py311-cpu

FROM ${RAY_IMAGE} AS wheel
USER root
WORKDIR /tmp/src
COPY pyproject.toml README.md LICENSE ./
COPY cluster cluster
COPY workers workers
COPY targets targets
COPY analysis analysis
COPY scenarios scenarios
RUN pip wheel --no-cache-dir --no-deps . -w /tmp/dist

FROM ${RAY_IMAGE}
USER 1000:100
COPY --from=wheel --chown=1000:100 /tmp/dist /tmp/dist
# Ray is already the pinned version here: pip keeps it, and installs the rest.
RUN pip install --no-cache-dir /tmp/dist/blastradius-*.whl \
 && python -c "import blastradius.cluster.cli, ray; assert ray.__version__ == '2.60.0', ray.__version__" \
 && blastradius run --help > /dev/null \
 && rm -rf /tmp/dist
WORKDIR /home/ray
