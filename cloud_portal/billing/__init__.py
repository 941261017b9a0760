"""Billing: the usage ledger, versioned rates, monthly charges per person and month close."""
