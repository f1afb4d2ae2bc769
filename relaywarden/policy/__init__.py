"""Loading and validating the policy a provider edits."""

from relaywarden.policy.loader import PolicyError, load_policy, policy_from_dict
from relaywarden.policy.schema import Policy

__all__ = ["Policy", "PolicyError", "load_policy", "policy_from_dict"]
