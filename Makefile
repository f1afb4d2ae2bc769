# The two commands a newcomer needs: `make demo` and `make test`.
.PHONY: setup demo test lint bench clean

setup:
	@scripts/setup.sh

demo: setup
	.venv/bin/relaywarden demo

test: setup
	.venv/bin/python -m pytest -q

lint: setup
	.venv/bin/ruff check relaywarden tests bench
	.venv/bin/mypy relaywarden

bench: setup
	.venv/bin/python -m bench

clean:
	rm -rf .venv build *.egg-info
