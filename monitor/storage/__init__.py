"""Durable state outside Kafka: the alert history, subscriptions, deliveries and silences."""
