"""Stolen SASL logins: one login used from too many client networks."""
