"""Lifecycle: policies (data), selectors and planners (pure), the scheduler."""
