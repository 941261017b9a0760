# Two commands: `make run` (the portal with the sandbox cloud and demo data) and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

.PHONY: help venv run test lint sandbox sandbox-stop sandbox-status translations bench clean

help:
	@echo "make run             sandbox cloud + portal on http://127.0.0.1:8000 with demo accounts"
	@echo "make test            the whole test suite (SQLite and PostgreSQL, sandbox cloud, browser, container)"
	@echo "make lint            ruff, mypy and the import contracts"
	@echo "make sandbox         start (installing if needed) the sandbox OpenStack cloud"
	@echo "make sandbox-stop    stop it;  make sandbox-status: what is running"
	@echo "make translations    re-extract strings and update the Welsh catalogue"

venv:
	@bash scripts/bootstrap-venv.sh

run: venv
	bash scripts/run-portal.sh

test: venv
	bash scripts/run-tests.sh

lint: venv
	.venv/bin/ruff check cloud_portal tests bench sandbox
	.venv/bin/mypy cloud_portal
	.venv/bin/lint-imports setup.cfg

sandbox:
	sandbox/sandboxctl start

sandbox-stop:
	sandbox/sandboxctl stop

sandbox-status:
	sandbox/sandboxctl status

translations: venv
	.venv/bin/pybabel extract -F babel.cfg -k lazy_gettext -k _l -o cloud_portal/translations/messages.pot cloud_portal templates
	.venv/bin/pybabel update -i cloud_portal/translations/messages.pot -d cloud_portal/translations
	.venv/bin/pybabel compile -d cloud_portal/translations --statistics

clean:
	rm -rf .venv instance test-artifacts .pytest_cache .ruff_cache .mypy_cache
