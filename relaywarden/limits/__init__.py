"""Rate limits, bursts and automatic blocks: who may send how much, right now.

At MAIL FROM one Redis round trip (`fetch`) reads the blocks and every window of
every scope of the sender; RCPT and end-of-message decisions are made locally
from that allowance; the end-of-message hook commits what was accepted on the
pipeline that records the decision (the second round trip).
"""
