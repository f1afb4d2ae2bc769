# The two commands a newcomer needs: `make demo` and `make test`.
.PHONY: setup setup-demo demo demo-web test lint bench screenshots clean

# Developer set-up (tests, browser, lint). A production relay uses scripts/install.sh.
setup:
	@scripts/setup.sh dev

# The demo needs only Postfix, Redis and the runtime + demo extra (no Chromium).
setup-demo:
	@scripts/setup.sh demo

demo: setup-demo
	.venv/bin/relaywarden demo

# The demo, then the stack stays up with the abuse team's desk until Ctrl-C.
demo-web: setup-demo
	.venv/bin/relaywarden demo --web

test: setup
	.venv/bin/python -m pytest -q

lint: setup
	.venv/bin/ruff check relaywarden tests bench
	.venv/bin/mypy relaywarden

bench: setup
	.venv/bin/python -m bench

# The README's screenshots, taken by the browser test in headless Chromium.
screenshots: setup
	RELAYWARDEN_SCREENSHOTS=docs/screenshots .venv/bin/python -m pytest -q tests/test_browser_desk.py

clean:
	rm -rf .venv build *.egg-info
