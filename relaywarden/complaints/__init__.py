"""Complaints from mailbox providers (RFC 5965 ARF feedback reports) and plain
forwards to abuse@: traced back to the transaction through the relay's trace
token, counted per customer, VPS and login, judged at the next MAIL FROM."""
