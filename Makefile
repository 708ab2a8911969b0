# The two commands of the README: `make demo` and `make test`. Both install what they need.
IMAGE ?= scipy
PYTEST_ARGS ?=

.PHONY: setup demo test test-unit lint

setup:
	scripts/setup.sh

# Bootstrap the base, build and smoke-test the default image, and say how to open it.
demo: setup
	scripts/engine.sh --keep sh -c 'imagekit validate && imagekit base && \
	  imagekit build $(IMAGE) && imagekit test $(IMAGE) && \
	  echo && echo "Open it:  docker run --rm -p 127.0.0.1:8888:8888 127.0.0.1:5055/imagekit/$(IMAGE):latest" && \
	  echo "          then the http://127.0.0.1:8888/lab?token=... URL it prints."'

lint:
	ruff check .
	mypy imagekit
	imagekit validate
	imagekit render --check
	imagekit schema --check

test-unit: setup lint
	python3 -m pytest -m "not integration" $(PYTEST_ARGS)

# Everything: lint, unit tests, and the integration tests on the real engine.
test: setup lint
	scripts/engine.sh python3 -m pytest $(PYTEST_ARGS)
