"""Executors: the same verbs (render, submit, status, logs, cancel) for every backend; see ``base``."""
