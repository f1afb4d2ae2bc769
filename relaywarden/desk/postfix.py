"""Postfix's hold queue, through its own commands.

Every command runs as an argument list (never a shell) with `-c CONFIG_DIR`, and
a queue id is checked against Postfix's queue-id alphabet before any command is
built, so `ALL`, `-`, an option or a path can never reach postsuper.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Short ids are upper-case hex. Long ids (enable_long_queue_ids) are the time in
# base 52 (digits and consonants, 'z' included), a 'z', then the inode number in
# base 51 (the same alphabet without 'z').
_B51 = "0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-y"
_QUEUE_ID = re.compile(rf"^(?:[0-9A-F]{{6,20}}|[{_B51}z]{{6,24}}z[{_B51}]{{1,16}})$")


class QueueIdError(ValueError):
    pass


class PostfixError(RuntimeError):
    """A Postfix command failed; the text is for the operator, never a client."""


def check_queue_id(text: str) -> str:
    if not isinstance(text, str) or not _QUEUE_ID.fullmatch(text):
        raise QueueIdError(f"{text[:40]!r} is not a Postfix queue id")
    return text


@dataclass(frozen=True)
class PostfixTools:
    config_dir: str
    bin_dir: str = "/usr/sbin"
    timeout: float = 30.0

    def _run(self, tool: str, *args: str) -> subprocess.CompletedProcess[bytes]:
        argv = [str(Path(self.bin_dir) / tool), "-c", self.config_dir, *args]
        try:
            return subprocess.run(
                argv,
                capture_output=True,
                timeout=self.timeout,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PostfixError(f"{tool}: {exc}") from exc

    def hold_ids(self) -> set[str]:
        """Queue ids in the hold queue now (`postqueue -j`)."""
        return {str(e.get("queue_id")) for e in self.hold_entries()}

    def hold_entries(self) -> list[dict[str, Any]]:
        """The hold queue now, as `postqueue -j` describes each message (queue_id,
        arrival_time, sender, recipients). Raises PostfixError when the queue
        cannot be read: that is never reported as "nothing held"."""
        out = self._run("postqueue", "-j")
        if out.returncode != 0:
            raise PostfixError(f"postqueue -j: {out.stderr.decode(errors='replace').strip()}")
        entries = []
        for line in out.stdout.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("queue_name") == "hold":
                entries.append(entry)
        return entries

    def release(self, queue_id: str) -> None:
        """Out of hold, then scheduled for delivery now rather than at the next queue run."""
        qid = check_queue_id(queue_id)
        self._counted("postsuper", "Released from hold", "-H", qid)
        # Delivered now; if that fails it goes at the next queue run. Never
        # `postqueue -f`: that would push every deferred message of every customer.
        self._run("postqueue", "-i", qid)

    def delete(self, queue_id: str) -> None:
        qid = check_queue_id(queue_id)
        self._counted("postsuper", "Deleted", "-d", qid, "hold")

    def content(self, queue_id: str) -> bytes:
        """The held message as it would be delivered: headers, blank line, body."""
        qid = check_queue_id(queue_id)
        out = self._run("postcat", "-h", "-b", "-q", qid)
        if out.returncode != 0:
            raise PostfixError(f"postcat: {out.stderr.decode(errors='replace').strip()}")
        return out.stdout

    def _counted(self, tool: str, label: str, *args: str) -> None:
        """Run a postsuper action and insist it acted on exactly one message."""
        out = self._run(tool, *args)
        report = out.stderr.decode(errors="replace")
        match = re.search(rf"{label}: (\d+) message", report)
        if out.returncode != 0 or match is None or int(match.group(1)) != 1:
            raise PostfixError(f"{tool} {' '.join(args)}: not in the hold queue ({report.strip()})")
