"""Restores: bringing archived assets back hot, as jobs that survive restarts (see jobs.py)."""
