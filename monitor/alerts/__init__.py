"""Alert rules, lifecycle, CAP 1.2 and delivery."""
