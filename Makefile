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

# The Redis paths run a second time against a real 3-master Redis Cluster, with
# every script call checked for keys it does not declare (tests/redis_backend.py).
CLUSTER_TESTS = tests/test_blocking.py tests/test_blocks_runtime.py tests/test_limits.py \
	tests/test_limits_identity.py tests/test_limits_reservation.py \
	tests/test_escalation_safety.py tests/test_campaigns.py tests/test_spam_budget.py \
	tests/test_adapter.py tests/test_outcomes_watcher.py tests/test_complaints_report.py \
	tests/test_ops_metrics.py tests/test_sender_ownership.py \
	tests/test_service.py tests/test_rollout.py tests/test_unique_recipients.py \
	tests/test_scoped_blocks.py

test: setup
	.venv/bin/python -m pytest -q
	RELAYWARDEN_TEST_REDIS=cluster .venv/bin/python -m pytest -q $(CLUSTER_TESTS)

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
