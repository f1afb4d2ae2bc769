"""Message content: a bounded view built while the body streams (`stream`), what
it holds (`view`), decoding (`decode`), campaign fingerprints (`fingerprint`,
`campaigns`) and the end-of-message checks over it (`checks`)."""
