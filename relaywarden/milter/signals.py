"""The signals `relaywarden run` answers, in one place for the single process,
the worker supervisor and its workers.

libmilter's own signal thread waits for SIGHUP, SIGTERM and SIGINT and stops the
milter on the first it gets (see server.py); it never waits for SIGUSR1 or
SIGUSR2, so those are the pair the shipped unit and the supervisor send.
"""

from __future__ import annotations

import signal

RELOAD = signal.SIGUSR1  # what the unit and the supervisor send to reload
STOP = signal.SIGUSR2  # and to stop (drain, then exit)
RELOAD_SIGNALS = (signal.SIGHUP, RELOAD)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, STOP)
