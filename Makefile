# The two commands of the README: `make demo` and `make test`. Both install what they need.
IMAGE ?= scipy
PYTEST_ARGS ?=

.PHONY: setup demo stop check test test-unit test-engines test-podman test-arm64 test-all e2e lint bench

setup:
	scripts/setup.sh

# The whole path on the embedded default: bootstrap the base, build the default image (and
# its SIF), smoke-test it, publish it to a local registry by digest and write the catalog and
# every consumer's export. The engine and the registry keep running: `make stop` stops them.
demo: setup
	scripts/engine.sh --keep scripts/demo.sh $(IMAGE)

# Stop what `make demo` left running: the local registry and the dockerd it started.
stop:
	scripts/registry.sh stop
	scripts/engine.sh --stop

# The fast loop for people (under 3 minutes here, no engine): lint, types (tests included),
# the import contracts (lint-imports: only imagekit.engine imports docker),
# the catalog's own checks (validate, render/lock/schema/ci --check) and the unit tests.
check: lint
	python3 -m pytest -m "not integration" -q -p no:cacheprovider $(PYTEST_ARGS)

lint:
	ruff check .
	mypy imagekit bench tests
	lint-imports
	imagekit validate
	imagekit render --check
	imagekit lock --check
	imagekit schema --check
	imagekit ci github --check

test-unit: setup lint
	python3 -m pytest -m "not integration" --cov=imagekit --cov-report=term $(PYTEST_ARGS)

# Everything: lint, unit tests, and the integration tests on the real engine (arm64's base
# under QEMU included; the arm64 builds of the stacks above it are `make test-arm64`'s).
test: setup lint
	scripts/engine.sh python3 -m pytest -m "not arm64_stacks" $(PYTEST_ARGS)

# arm64 under QEMU: base bootstrapped, built, tested, converted and published beside amd64,
# and scipy built and tested for arm64 on top of it (about 25 minutes here).
test-arm64: setup
	scripts/engine.sh python3 -m pytest -m arm64 -p no:cacheprovider $(PYTEST_ARGS)

# The engines users run today, each from Debian sid's packages in a root of its own, started
# empty beside the host's: imagekit's core path (base, build, test, both SIF methods,
# publish, verify) on Docker 28.5 with buildx, on dockerd's image store and on containerd's.
# `make test` runs it too, beside the rest of the suite. ENGINES=d28c,p58 runs only those.
test-engines: setup
	IMAGEKIT_TEST_ENGINES=$(ENGINES) scripts/engine.sh python3 -m pytest -m engines \
		-p no:cacheprovider $(PYTEST_ARGS)

# The integration suite again with rootful Podman as the engine for every build, check, SIF
# and publish (IMAGEKIT_ENGINE=podman), minus the tests whose subject is Docker itself
# (marker docker_engine: its daemons as CI runners, its BuildKit cache mounts, reproducible
# BuildKit builds) and the Podman tests, which `make test` runs.
test-podman: setup
	IMAGEKIT_ENGINE=podman python3 -m pytest -p no:cacheprovider \
		-m "integration and not docker_engine and not podman" $(PYTEST_ARGS)

# Both: the whole suite on Docker, then again on Podman.
test-all: test test-podman

# Real hubs spawn the published images: JupyterHub + DockerSpawner, JupyterHub + batchspawner
# on a one-node Slurm (apptainer from Debian sid), and the same over SSH. Builds, tests and
# publishes what they spawn into a fresh local registry first (`make stop` the demo's).
e2e: setup
	scripts/engine.sh python3 -m pytest -m e2e -p no:cacheprovider $(PYTEST_ARGS)

# Benchmarks: imagekit side by side with hpccm and a hand-written Dockerfile, on the real
# engine (about 90 minutes with the defaults; BENCH_ARGS="--repeats 1 --starts 3" for a
# quick look). Writes bench/results/<date>.json, BENCHMARKS.md and bench/results/chart.svg.
BENCH_ARGS ?=
bench: setup
	python3 -m pip install -q --disable-pip-version-check -e '.[bench]'
	scripts/engine.sh python3 -m bench $(BENCH_ARGS)
