"""Classical (non-learned) baselines the served models are compared against."""
