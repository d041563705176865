# The two set-up commands: `make demo` runs the product, `make test` passes the tests.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export TCP_NODELAY := 1

# The tests talk to this machine's real PostgreSQL and Redis.
TEST_ENV := DEBUG=0 SECRET_KEY=test-only-secret \
	DATABASE_URL=$${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/triage} \
	REDIS_URL=$${TEST_REDIS_URL:-redis://127.0.0.1:6379/11} \
	DICOM_STORAGE_DIR=$(CURDIR)/var/test-dicom \
	DICOM_ALLOWED_AE_TITLES=STORESCU,ECHOSCU,TESTSCU \
	ALLOWED_HOSTS=testserver,localhost,127.0.0.1 SECURE_COOKIES=0 \
	STUDY_STABLE_SECONDS=2 STOW_MAX_REQUEST_BYTES=8000000 STOW_MAX_PART_BYTES=4000000 \
	OUTBOUND_RETRY_SECONDS=1 OUTBOUND_RETRY_MAX_SECONDS=2 OUTBOUND_ANSWER_SECONDS=2 \
	OUTBOUND_LEASE_SECONDS=8

.PHONY: demo test drills lint typecheck install clean

$(STAMP): pyproject.toml deploy/bootstrap-dev.sh
	./deploy/bootstrap-dev.sh --test

install: $(STAMP)

demo: $(STAMP)
	DEBUG=1 $(PY) manage.py run_demo $(DEMO_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(TEST_ENV) $(VENV)/bin/mypy triage worklist inference

test: lint typecheck
	$(TEST_ENV) $(VENV)/bin/pytest -m "not slow_drill" --durations=15 $(PYTEST_ARGS)

# The slowest fault drills (SIGKILLed task workers, a Redis broker restarted), kept out of
# `make test`'s 15 minutes; CI runs them after it.
drills: $(STAMP)
	$(TEST_ENV) $(VENV)/bin/pytest -m slow_drill --durations=10 $(PYTEST_ARGS)

clean:
	rm -rf var/test-dicom var/demo.sqlite3 var/dicom
